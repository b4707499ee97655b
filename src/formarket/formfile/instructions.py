"""The table of Formfile instructions: one row drives the parser, the help text and the renderer's
keyword spelling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from formarket.formfile.context import LineContext
from formarket.formfile.header import (
    handle_description,
    handle_disk,
    handle_from,
    handle_gpu,
    handle_memory,
    handle_model,
    handle_name,
    handle_vcpu,
)
from formarket.formfile.steps import (
    handle_copy,
    handle_entrypoint,
    handle_env,
    handle_expose,
    handle_install,
    handle_run,
    handle_workdir,
)
from formarket.formfile.user import handle_user

__all__ = ["INSTRUCTIONS", "KEYWORDS", "Instruction"]


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    aliases: tuple[str, ...]
    once: bool  # a second one is an error (Formation silently kept the first)
    handle: Callable[[LineContext], None]
    summary: str


INSTRUCTIONS: tuple[Instruction, ...] = (
    Instruction("NAME", (), True, handle_name, "the image's name (required)"),
    Instruction("DESCRIPTION", (), True, handle_description, "free text"),
    Instruction("FROM", (), True, handle_from, "the base image"),
    Instruction("MODEL", (), False, handle_model, "required:<id> or preferred:<id>"),
    Instruction("VCPU", ("CPU", "CORES"), True, handle_vcpu, "vCPUs, 1..128"),
    Instruction("MEMORY", ("MEM", "MBS"), True, handle_memory, "MiB, 512..256000"),
    Instruction("DISK", ("STORAGE",), True, handle_disk, "GiB, 5..65535"),
    Instruction("GPU", (), False, handle_gpu, "<model>[:<count>]"),
    Instruction("USER", (), False, handle_user, "field:value ... (an account)"),
    Instruction("COPY", (), False, handle_copy, "<src> <dst>"),
    Instruction("INSTALL", (), False, handle_install, "<package> ..."),
    Instruction("RUN", (), False, handle_run, "<shell command>, as root at build time"),
    Instruction("ENV", (), False, handle_env, "[--scope=...] KEY=value ..."),
    Instruction("WORKDIR", (), True, handle_workdir, "/absolute/path"),
    Instruction("ENTRYPOINT", (), False, handle_entrypoint, "the service; the last one wins"),
    Instruction("EXPOSE", (), False, handle_expose, "<port>[/tcp] ..."),
)

# Every accepted spelling, aliases included, to its instruction.
KEYWORDS: dict[str, Instruction] = {
    spelling: row for row in INSTRUCTIONS for spelling in (row.keyword, *row.aliases)
}
