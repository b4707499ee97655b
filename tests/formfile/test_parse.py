"""Formfiles that formfile.md says are valid parse with the meaning it gives them."""

from __future__ import annotations

import pytest

from formarket.formfile.parser import check_formfile, parse_formfile, render_formfile
from formarket.schemas.formfile import (
    CopyStep,
    EnvStep,
    EnvVar,
    Formfile,
    FormfileUser,
    GpuRequest,
    InstallStep,
    RunStep,
    UserStep,
    WorkdirStep,
)

HELLO_AGENT = """\
NAME hello-agent
FROM busybox
VCPU 1
MEMORY 512
DISK 5
COPY ./www /srv/www
ENV GREETING="hello from a formfile"
EXPOSE 8080
ENTRYPOINT httpd -f -p 8080 -h /srv/www
"""

TINY_LLM_SERVER = """\
NAME tiny-llm-server
DESCRIPTION OpenAI-compatible server for a small quantised model
VCPU 4
MEM 8192
DISK 20
INSTALL python3 python3-pip
COPY ./server /app
WORKDIR /app
RUN pip install --break-system-packages -r requirements.txt
ENV --scope=service:form-app MODEL_PATH=/app/model.gguf
EXPOSE 8000
ENTRYPOINT ["python3", "/app/serve.py"]
"""

RESEARCH_AGENT = """\
NAME research-agent
DESCRIPTION Answers questions with citations
MODEL required:acme/tiny-llm
USER username:agent passwd:"change me" sudo:false
VCPU 2
MEMORY 2048
COPY ./agent /app
WORKDIR /app
ENTRYPOINT ["python3", "agent.py"]
"""


def test_hello_agent() -> None:
    result = check_formfile(HELLO_AGENT)
    assert result.errors == ()
    assert result.formfile == Formfile(
        name="hello-agent",
        base="busybox",
        vcpus=1,
        memory_mib=512,
        disk_gib=5,
        steps=(
            CopyStep(src="./www", dst="/srv/www"),
            EnvStep(variables=(EnvVar(key="GREETING", value="hello from a formfile"),)),
        ),
        expose=(8080,),
        entrypoint=("httpd", "-f", "-p", "8080", "-h", "/srv/www"),
    )
    assert result.formfile.copies_whole_context is False
    assert result.source_map is not None
    assert result.source_map.step_lines == (6, 7)
    assert result.source_map.first_line("EXPOSE") == 8


def test_tiny_llm_server() -> None:
    formfile = parse_formfile(TINY_LLM_SERVER)
    assert formfile.description == "OpenAI-compatible server for a small quantised model"
    assert (formfile.vcpus, formfile.memory_mib, formfile.disk_gib) == (4, 8192, 20)
    assert formfile.base is None
    assert formfile.workdir == "/app"
    assert formfile.steps == (
        InstallStep(packages=("python3", "python3-pip")),
        CopyStep(src="./server", dst="/app"),
        WorkdirStep(path="/app"),
        RunStep(command="pip install --break-system-packages -r requirements.txt"),
        EnvStep(
            scope="service",
            scope_name="form-app",
            variables=(EnvVar(key="MODEL_PATH", value="/app/model.gguf"),),
        ),
    )
    assert formfile.expose == (8000,)
    assert formfile.entrypoint == ("python3", "/app/serve.py")


def test_research_agent() -> None:
    formfile = parse_formfile(RESEARCH_AGENT)
    assert formfile.model_required == ("acme/tiny-llm",)
    assert formfile.model_preferred == ()
    (user,) = formfile.users
    assert user.username == "agent"
    assert user.passwd.get_secret_value() == "change me"
    assert user.sudo is False
    assert formfile.steps[0] == UserStep(username="agent")
    assert formfile.entrypoint == ("python3", "agent.py")


def test_defaults() -> None:
    formfile = parse_formfile("NAME bare\n")
    assert formfile == Formfile(name="bare")
    assert formfile.base is None
    assert (formfile.vcpus, formfile.memory_mib, formfile.disk_gib) == (1, 512, None)
    assert formfile.workdir == "/"
    assert formfile.entrypoint is None
    assert formfile.copies_whole_context is True
    assert (formfile.gpus, formfile.users, formfile.steps) == ((), (), ())


def test_user_defaults_are_formations() -> None:
    (user,) = parse_formfile("NAME u\nUSER username:a passwd:b\n").users
    assert user == FormfileUser(username="a", passwd="b")
    assert (user.sudo, user.lock_passwd, user.ssh_pwauth) == (False, False, True)
    assert (user.disable_root, user.chpasswd_expire, user.shell) == (True, True, "/bin/bash")


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("VCPU 3", "vcpus", 3),
        ("CPU 3", "vcpus", 3),
        ("CORES 3", "vcpus", 3),
        ("MEMORY 1024", "memory_mib", 1024),
        ("MEM 1024", "memory_mib", 1024),
        ("MBS 1024", "memory_mib", 1024),
        ("DISK 7", "disk_gib", 7),
        ("STORAGE 7", "disk_gib", 7),
    ],
)
def test_aliases(line: str, field: str, value: int) -> None:
    assert getattr(parse_formfile(f"NAME a\n{line}\n"), field) == value


def test_limits_are_inclusive() -> None:
    low = parse_formfile("NAME a\nVCPU 1\nMEMORY 512\nDISK 5\n")
    high = parse_formfile("NAME a\nVCPU 128\nMEMORY 256000\nDISK 65535\n")
    assert (low.vcpus, low.memory_mib, low.disk_gib) == (1, 512, 5)
    assert (high.vcpus, high.memory_mib, high.disk_gib) == (128, 256000, 65535)


def test_numbers_as_formation_reads_them() -> None:
    # Rust's integer parsing accepts a leading `+` and leading zeros.
    formfile = parse_formfile("NAME a\nVCPU +2\nMEMORY 01024\n")
    assert (formfile.vcpus, formfile.memory_mib) == (2, 1024)


def test_user_fields_colon_equals_and_quotes() -> None:
    text = (
        "NAME u\n"
        "USER username=ops passwd='p:w=d \"x\"' sudo:yes lock_passwd=on ssh_pwauth:0 "
        "disable_root=off chpasswd_expire:No groups:adm,sudo "
        'ssh_authorized_keys:"ssh-ed25519 AAAA one, ssh-rsa BBBB two" shell=/bin/sh\n'
    )
    (user,) = parse_formfile(text).users
    assert user.username == "ops"
    assert user.passwd.get_secret_value() == 'p:w=d "x"'
    assert (user.sudo, user.lock_passwd, user.ssh_pwauth) == (True, True, False)
    assert (user.disable_root, user.chpasswd_expire) == (False, False)
    assert user.groups == ("adm", "sudo")
    assert user.ssh_authorized_keys == ("ssh-ed25519 AAAA one", "ssh-rsa BBBB two")
    assert user.shell == "/bin/sh"


def test_hashed_password_is_kept_as_a_hash() -> None:
    hashed = "$6$rounds=4096$salt$abcdefghijklmnop"
    (user,) = parse_formfile(f"NAME u\nUSER username:a passwd:'{hashed}'\n").users
    assert user.password_is_hashed
    assert user.passwd.get_secret_value() == hashed


def test_password_never_dumped_in_clear() -> None:
    formfile = parse_formfile(RESEARCH_AGENT)
    assert "change me" not in repr(formfile)
    assert "change me" not in str(formfile.model_dump(mode="json"))
    assert "change me" not in formfile.model_dump_json()


def test_continuation_joins_lines() -> None:
    text = (
        "NAME joined\n"
        "USER username:agent \\\n"
        "     passwd:secret \\\n"
        "  # a comment inside a continuation is skipped\n"
        "     sudo:true\n"
        "RUN apt-get update && \\\n"
        "    apt-get install -y curl\n"
    )
    result = check_formfile(text)
    assert result.formfile is not None
    (user,) = result.formfile.users
    assert (user.username, user.passwd.get_secret_value(), user.sudo) == ("agent", "secret", True)
    assert result.formfile.steps[1] == RunStep(
        command="apt-get update &&     apt-get install -y curl"
    )
    assert result.source_map is not None
    assert result.source_map.step_lines == (2, 6)


def test_continuation_with_trailing_whitespace_after_backslash() -> None:
    assert parse_formfile("NAME a\nRUN echo \\  \n  hi\n").steps == (RunStep(command="echo   hi"),)


def test_doubled_backslash_is_not_a_continuation() -> None:
    formfile = parse_formfile("NAME a\nRUN echo \\\\\nVCPU 2\n")
    assert formfile.steps == (RunStep(command="echo \\\\"),)
    assert formfile.vcpus == 2


def test_comments_blank_lines_and_whitespace() -> None:
    text = "\n# leading comment\n   NAME spaced   \n\n\t# indented comment\nMEM 2048 \n"
    formfile = parse_formfile(text)
    assert (formfile.name, formfile.memory_mib) == ("spaced", 2048)


def test_crlf_and_byte_order_mark() -> None:
    formfile = parse_formfile("\ufeffNAME windows\r\nVCPU 2\r\n")
    assert (formfile.name, formfile.vcpus) == ("windows", 2)


def test_model_ids_split_on_the_first_colon_only() -> None:
    text = "NAME m\nMODEL required:ollama:llama3:8b\nMODEL preferred:hf:org/model:q4\n"
    formfile = parse_formfile(text)
    assert formfile.model_required == ("ollama:llama3:8b",)
    assert formfile.model_preferred == ("hf:org/model:q4",)


def test_gpus() -> None:
    formfile = parse_formfile("NAME g\nGPU H100:2\nGPU B200\n")
    assert formfile.gpus == (GpuRequest(model="H100", count=2), GpuRequest(model="B200", count=1))


def test_known_bases_and_gpus_are_parameters() -> None:
    text = "NAME f\nFROM alpine:3.20\nGPU MI300X:4\n"
    formfile = parse_formfile(text, known_bases={"alpine:3.20"}, known_gpus={"MI300X"})
    assert formfile.base == "alpine:3.20"
    assert formfile.gpus == (GpuRequest(model="MI300X", count=4),)
    assert check_formfile("NAME f\nFROM debian:bookworm\n", known_bases={"busybox"}).errors


def test_env_quoting_and_several_pairs() -> None:
    text = (
        "NAME e\n"
        "ENV A=1 B=\"two words\" C='it''s' D= E=x=y\n"
        "ENV --scope=user:agent PATH=/usr/bin\n"
        "ENV --scope=system F=\"a 'b'\"\n"
    )
    first, second, third = parse_formfile(text).steps
    assert isinstance(first, EnvStep)
    assert {var.key: var.value for var in first.variables} == {
        "A": "1",
        "B": "two words",
        "C": "its",
        "D": "",
        "E": "x=y",
    }
    assert second == EnvStep(
        scope="user", scope_name="agent", variables=(EnvVar(key="PATH", value="/usr/bin"),)
    )
    assert third == EnvStep(variables=(EnvVar(key="F", value="a 'b'"),))


def test_copy_with_quoted_paths() -> None:
    formfile = parse_formfile("NAME c\nCOPY \"my dir/file x\" '/opt/my app'\n")
    assert formfile.steps == (CopyStep(src="my dir/file x", dst="/opt/my app"),)
    assert not formfile.copies_whole_context


def test_entrypoint_plain_form_groups_with_double_quotes_only() -> None:
    formfile = parse_formfile("NAME e\nENTRYPOINT sh -c \"echo hi\" 'x y'\n")
    assert formfile.entrypoint == ("sh", "-c", "echo hi", "'x", "y'")


def test_last_entrypoint_wins() -> None:
    formfile = parse_formfile('NAME e\nENTRYPOINT first\nENTRYPOINT ["second", "arg"]\n')
    assert formfile.entrypoint == ("second", "arg")


def test_expose_ports() -> None:
    formfile = parse_formfile("NAME p\nEXPOSE 8080/tcp 9000\nEXPOSE 22\n")
    assert formfile.expose == (8080, 9000, 22)


def test_install_accepts_arch_and_version_pins() -> None:
    (step,) = parse_formfile("NAME i\nINSTALL libc6:amd64 python3=3.11.2-1+b1 g++\n").steps
    assert step == InstallStep(packages=("libc6:amd64", "python3=3.11.2-1+b1", "g++"))


def test_equal_meaning_gives_equal_models() -> None:
    terse = "NAME same\nMEM 1024\nCPU 2\nCOPY a /b\n"
    verbose = "# comment\nNAME   same\n\nMEMORY 1024  \nVCPU \\\n  2\nCOPY 'a' \"/b\"\n"
    assert parse_formfile(terse) == parse_formfile(verbose)


def test_render_examples_round_trip() -> None:
    for text in (HELLO_AGENT, TINY_LLM_SERVER, RESEARCH_AGENT):
        formfile = parse_formfile(text)
        assert parse_formfile(render_formfile(formfile)) == formfile
