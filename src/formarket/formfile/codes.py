"""The stable codes of Formfile errors, by name: the FF rows of `formarket.rules`, where each
has its title, why it exists, an example and its fix (`formarket rules FF001`)."""

from __future__ import annotations

from enum import StrEnum

from formarket.rules import rules_of

__all__ = ["FormfileCode"]

_ID = {rule.name: rule.id for rule in rules_of("FF")}


class FormfileCode(StrEnum):
    """A kind of Formfile mistake. Codes are never renumbered or reused."""

    UNKNOWN_INSTRUCTION = _ID["UNKNOWN_INSTRUCTION"]
    KEYWORD_CASE = _ID["KEYWORD_CASE"]
    MISSING_ARGUMENT = _ID["MISSING_ARGUMENT"]
    BAD_NUMBER = _ID["BAD_NUMBER"]
    OUT_OF_RANGE = _ID["OUT_OF_RANGE"]
    REPEATED_INSTRUCTION = _ID["REPEATED_INSTRUCTION"]
    MISSING_NAME = _ID["MISSING_NAME"]
    BAD_NAME = _ID["BAD_NAME"]
    UNKNOWN_BASE = _ID["UNKNOWN_BASE"]
    UNKNOWN_GPU = _ID["UNKNOWN_GPU"]
    BAD_MODEL = _ID["BAD_MODEL"]
    BAD_USER_FIELD = _ID["BAD_USER_FIELD"]
    MISSING_USER_FIELD = _ID["MISSING_USER_FIELD"]
    BAD_USER_VALUE = _ID["BAD_USER_VALUE"]
    BAD_BOOLEAN = _ID["BAD_BOOLEAN"]
    COPY_ESCAPES_CONTEXT = _ID["COPY_ESCAPES_CONTEXT"]
    BAD_COPY_DESTINATION = _ID["BAD_COPY_DESTINATION"]
    WRONG_ARGUMENT_COUNT = _ID["WRONG_ARGUMENT_COUNT"]
    BAD_PACKAGE = _ID["BAD_PACKAGE"]
    BAD_ENV = _ID["BAD_ENV"]
    BAD_ENV_SCOPE = _ID["BAD_ENV_SCOPE"]
    UNTERMINATED_QUOTE = _ID["UNTERMINATED_QUOTE"]
    BAD_WORKDIR = _ID["BAD_WORKDIR"]
    BAD_ENTRYPOINT = _ID["BAD_ENTRYPOINT"]
    BAD_PORT = _ID["BAD_PORT"]
    DANGLING_CONTINUATION = _ID["DANGLING_CONTINUATION"]
    CONTROL_CHARACTER = _ID["CONTROL_CHARACTER"]
    TOO_LARGE = _ID["TOO_LARGE"]
    DUPLICATE_VALUE = _ID["DUPLICATE_VALUE"]
