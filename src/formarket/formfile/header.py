"""Instructions that describe the VM rather than build it: identity, base, model, resources."""

from __future__ import annotations

import re

from formarket.formfile.codes import FormfileCode
from formarket.formfile.context import LineContext, show, suggest
from formarket.schemas.formfile import (
    DISK_RANGE,
    GPU_COUNT_RANGE,
    MEMORY_RANGE,
    MODEL_ID_PATTERN,
    NAME_PATTERN,
    VCPU_RANGE,
    GpuRequest,
)

__all__ = [
    "handle_description",
    "handle_disk",
    "handle_from",
    "handle_gpu",
    "handle_memory",
    "handle_model",
    "handle_name",
    "handle_vcpu",
]

_NAME = re.compile(NAME_PATTERN)
_MODEL_ID = re.compile(MODEL_ID_PATTERN)


def handle_name(ctx: LineContext) -> None:
    word = ctx.one_word("name")
    if not _NAME.fullmatch(word.value):
        ctx.fail(
            FormfileCode.BAD_NAME,
            f"NAME {show(word.value)} is not a valid name",
            at=word.offset,
            hint="use 1 to 63 characters: lower-case letters, digits, `.`, `_`, `-`, "
            "starting with a letter or digit",
        )
    ctx.draft.name = word.value


def handle_description(ctx: LineContext) -> None:
    # A logical line is stripped and free of control characters, so its rest is valid free text.
    ctx.draft.description = ctx.args


def handle_from(ctx: LineContext) -> None:
    word = ctx.one_word("base")
    known = ctx.settings.bases
    if word.value not in known:
        did_you_mean = suggest(word.value, known)
        ctx.fail(
            FormfileCode.UNKNOWN_BASE,
            f"unknown base {show(word.value)}" + (f"; {did_you_mean}" if did_you_mean else ""),
            at=word.offset,
            hint="known bases: " + ", ".join(sorted(known)),
        )
    ctx.draft.base = word.value


def handle_model(ctx: LineContext) -> None:
    word = ctx.one_word("requirement")
    kind, sep, model_id = word.value.partition(":")
    if not sep or kind not in {"required", "preferred"}:
        ctx.fail(
            FormfileCode.BAD_MODEL,
            f"MODEL {show(word.value)} does not say `required:` or `preferred:`",
            at=word.offset,
            hint="write `MODEL required:<model-id>` or `MODEL preferred:<model-id>`",
        )
    if not _MODEL_ID.fullmatch(model_id):
        ctx.fail(
            FormfileCode.BAD_MODEL,
            f"MODEL: {show(model_id)} is not a valid model id",
            at=word.offset + len(kind) + 1,
            hint="a model id is letters, digits and `._/:@+-`, for example `acme/tiny-llm`",
        )
    if ctx.unique("model id", model_id, word.offset):
        target = ctx.draft.model_required if kind == "required" else ctx.draft.model_preferred
        target.append(model_id)


def handle_vcpu(ctx: LineContext) -> None:
    word = ctx.one_word("count")
    value = ctx.number_in(word.value, word.offset, *VCPU_RANGE, "vCPUs")
    if value is not None:
        ctx.draft.vcpus = value


def handle_memory(ctx: LineContext) -> None:
    word = ctx.one_word("size")
    value = ctx.number_in(word.value, word.offset, *MEMORY_RANGE, "MiB")
    if value is not None:
        ctx.draft.memory_mib = value


def handle_disk(ctx: LineContext) -> None:
    word = ctx.one_word("size")
    value = ctx.number_in(word.value, word.offset, *DISK_RANGE, "GiB")
    if value is not None:
        ctx.draft.disk_gib = value


def handle_gpu(ctx: LineContext) -> None:
    word = ctx.one_word("model")
    model, sep, count_text = word.value.partition(":")
    known = ctx.settings.gpus
    if model not in known:
        did_you_mean = suggest(model, known)
        ctx.error(
            FormfileCode.UNKNOWN_GPU,
            f"unknown GPU model {show(model)}" + (f"; {did_you_mean}" if did_you_mean else ""),
            at=word.offset,
            hint="known GPU models: "
            + ", ".join(sorted(known))
            + "; write `GPU <model>[:<count>]`",
        )
        model = ""
    count = 1
    if sep:
        parsed = ctx.number_in(count_text, word.offset + len(model) + 1, *GPU_COUNT_RANGE, "GPUs")
        if parsed is None:
            return
        count = parsed
    if model and ctx.unique("GPU model", model, word.offset):
        ctx.draft.gpus.append(GpuRequest(model=model, count=count))
