"""Formfile errors as values, and the result of checking a Formfile."""

from __future__ import annotations

from dataclasses import dataclass

from formarket.errors import LocatedError, Location
from formarket.formfile.codes import FormfileCode
from formarket.schemas.formfile import Formfile, FormfileSourceMap

__all__ = ["FormfileError", "FormfileResult"]


@dataclass(frozen=True, slots=True)
class FormfileError:
    """One mistake in a Formfile. `line` and `column` are 1-based; 0 means the whole file/line."""

    path: str
    line: int
    column: int
    code: FormfileCode
    message: str
    hint: str = ""

    @property
    def location(self) -> Location:
        return Location(self.path, self.line, self.column)

    def __str__(self) -> str:
        text = f"{self.location}: {self.code} {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_exception(self) -> LocatedError:
        return LocatedError(self.location, f"{self.code} {self.message}", hint=self.hint)


@dataclass(frozen=True, slots=True)
class FormfileResult:
    """What checking a Formfile found: the model and its source map, or every error."""

    formfile: Formfile | None
    source_map: FormfileSourceMap | None
    errors: tuple[FormfileError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors
