"""Domain XML and the formarket record in its metadata: round trip, and hostile metadata."""

from __future__ import annotations

import contextlib
import dataclasses
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.errors import InputError
from formarket.farm.domain import (
    NAMESPACE,
    QEMU_NAMESPACE,
    DomainSpec,
    MetadataError,
    domain_xml,
    read_metadata,
)

_name = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}[a-z0-9]\Z")
_ports = st.lists(
    st.tuples(st.integers(1, 65535), st.integers(1, 65535)), max_size=5, unique_by=lambda p: p[0]
)
_paths = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40)

specs = st.builds(
    DomainSpec,
    deployment_id=_name,
    kind=st.sampled_from(["agent", "model"]),
    listing_id=st.builds(lambda p, s: f"{p}/{s}", _name, _name),
    listing_version=st.from_regex(r"\A(0|[1-9][0-9]{0,3})\.(0|[1-9])\.(0|[1-9])(-rc\.[1-9])?\Z"),
    model_deployment=st.none() | _name,
    build_id=st.from_regex(r"\A[0-9a-f]{64}\Z"),
    domain_type=st.sampled_from(["qemu", "kvm"]),
    vcpus=st.integers(1, 128),
    memory_mib=st.integers(128, 1 << 20),
    kernel=_paths.map(lambda p: "/k/" + p),
    initrd=_paths.map(lambda p: "/i/" + p),
    disk=_paths.map(lambda p: "/d/" + p),
    config_disk=st.none() | _paths,
    kernel_cmdline=st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=80),
    ports=_ports.map(tuple),
    address=st.sampled_from(["127.0.0.1", "10.0.0.7", "host-1.example.org"]),
    console_log=_paths,
    slot=st.sampled_from([0, 1]),
)


def spec(**changes: object) -> DomainSpec:
    base = DomainSpec(
        deployment_id="dep-0123456789ab",
        kind="agent",
        listing_id="tinyforge/faq-bot",
        listing_version="1.2.0",
        model_deployment="dep-aaaaaaaaaaaa",
        build_id="ab" * 32,
        domain_type="qemu",
        vcpus=2,
        memory_mib=512,
        kernel="/pool/b.kernel",
        initrd="/pool/b.initrd",
        disk="/pool/dep.overlay.qcow2",
        config_disk="/pool/dep.config.img",
        kernel_cmdline="console=ttyS0 root=/dev/vda rw",
        ports=((8080, 40001), (9090, 40002)),
        address="127.0.0.1",
        console_log="/pool/dep.console.log",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(specs)
def test_the_record_round_trips_through_the_domain_xml(value: DomainSpec) -> None:
    assert read_metadata(domain_xml(value)) == value.record()


@given(specs)
def test_user_values_never_become_markup(value: DomainSpec) -> None:
    root = ET.fromstring(domain_xml(value))
    slot = f"_{value.slot}" if value.slot else ""
    assert root.findtext("name") == f"formarket-{value.deployment_id}{slot}"
    assert root.findtext("os/cmdline") == value.kernel_cmdline
    assert root.find("devices/disk/source").get("file") == value.disk  # type: ignore[union-attr]


def test_the_domain_boots_its_kernel_with_ports_forwarded_on_the_address() -> None:
    root = ET.fromstring(domain_xml(spec()))
    assert root.get("type") == "qemu"
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]  # type: ignore[union-attr]
    assert disks[1].find("readonly") is not None
    args = [a.get("value") or "" for a in root.iter(f"{{{QEMU_NAMESPACE}}}arg")]
    assert "hostfwd=tcp:127.0.0.1:40001-:8080,hostfwd=tcp:127.0.0.1:40002-:9090" in args[1]
    assert spec().record().endpoint == "http://127.0.0.1:40001"


def test_an_address_that_would_add_qemu_options_is_refused() -> None:
    with pytest.raises(InputError):
        domain_xml(spec(address="127.0.0.1,smb=/"))


def _with_metadata(inner: str) -> str:
    return (
        f"<domain type='qemu'><name>x</name><metadata>"
        f"<f:formarket xmlns:f='{NAMESPACE}'>{inner}</f:formarket></metadata></domain>"
    )


GOOD = (
    "<f:deployment>dep-1</f:deployment><f:kind>model</f:kind>"
    "<f:listing id='a/b' version='1.0.0'/><f:build>abcdef0123</f:build>"
    "<f:ports address='127.0.0.1'><f:port guest='8080' host='4000'/></f:ports>"
)


def test_a_hand_written_record_reads_back() -> None:
    record = read_metadata(_with_metadata(GOOD))
    assert record is not None
    assert (record.deployment_id, record.ports, record.running) == ("dep-1", ((8080, 4000),), None)


def test_a_second_slot_is_a_domain_and_volumes_of_their_own() -> None:
    second = spec(slot=1)
    assert second.name == "formarket-dep-0123456789ab_1"
    record = read_metadata(domain_xml(second))
    assert record is not None
    assert record.slot == 1
    first = read_metadata(domain_xml(spec()))
    assert first is not None
    assert first.slot == 0
    assert "<formarket:slot>" not in domain_xml(spec())  # slot 0 reads as before


def test_domains_that_are_not_formarkets_have_no_record() -> None:
    assert read_metadata("<domain type='kvm'><name>web</name></domain>") is None
    other = "<domain><metadata><x:app xmlns:x='urn:other'>1</x:app></metadata></domain>"
    assert read_metadata(other) is None


@pytest.mark.parametrize(
    "inner",
    [
        "",
        GOOD.replace("<f:kind>model</f:kind>", "<f:kind>root</f:kind>"),
        GOOD.replace("dep-1", "../../etc"),
        GOOD.replace("dep-1", "d" * 100_000),
        GOOD.replace("guest='8080'", "guest='" + "9" * 5000 + "'"),
        GOOD.replace("host='4000'", "host='-1'"),
        GOOD.replace("host='4000'", "host='70000'"),
        GOOD.replace("host='4000'", "host='٤٠٠٠'"),
        GOOD.replace("version='1.0.0'", "version='latest'"),
        GOOD.replace("address='127.0.0.1'", "address='1.2.3.4,smb=/'"),
        GOOD.replace("<f:build>abcdef0123</f:build>", ""),
        GOOD + "<f:model-deployment>$(reboot)</f:model-deployment>",
        GOOD.replace("<f:port guest='8080' host='4000'/>", "<f:port guest='1' host='2'/>" * 65),
        GOOD + "<f:slot>2</f:slot>",
        GOOD + "<f:slot>-1</f:slot>",
        GOOD + "<f:slot>١</f:slot>",
    ],
)
def test_hostile_or_incomplete_metadata_gives_no_record(inner: str) -> None:
    assert read_metadata(_with_metadata(inner)) is None


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "not xml at all",
        "<domain><name>x</name>",
        "<network/>",
        "<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'aaaa'>]><domain>&a;</domain>",
        "<domain>" + "<x>" * 10 + "</domain>",
        "<domain>" + " " * (2 << 20) + "</domain>",
    ],
)
def test_text_that_is_not_a_domain_xml_is_a_clear_error(xml: str) -> None:
    with pytest.raises(MetadataError):
        read_metadata(xml)


@given(st.text(max_size=300))
def test_any_text_gives_a_record_none_or_a_metadata_error(text: str) -> None:
    with contextlib.suppress(MetadataError):
        read_metadata(text)


def _netdev(xml: str) -> str:
    return _arg(xml, "-netdev")


def _arg(xml: str, option: str) -> str:
    args = [a.get("value") or "" for a in ET.fromstring(xml).iter(f"{{{QEMU_NAMESPACE}}}arg")]
    return args[args.index(option) + 1]


def test_an_agent_reaches_the_gateway_and_nothing_else_and_a_model_reaches_nothing() -> None:
    agent = spec(kind="agent", model_endpoint="http://127.0.0.1:8080")
    assert read_metadata(domain_xml(agent)) == agent.record()
    assert _netdev(domain_xml(agent)) == (
        "user,id=fmnet0,restrict=on"
        ",hostfwd=tcp:127.0.0.1:40001-:8080,hostfwd=tcp:127.0.0.1:40002-:9090"
        ",guestfwd=tcp:10.0.2.100:80-cmd:socat STDIO TCP:127.0.0.1:8080"
    )
    # qemu may start the forward's process in an agent's domain, and in no other.
    assert _arg(domain_xml(agent), "-sandbox") == "on,obsolete=deny,resourcecontrol=deny"
    default_port = spec(kind="agent", model_endpoint="http://gateway.internal")
    assert _netdev(domain_xml(default_port)).endswith("TCP:gateway.internal:80")
    model = spec(kind="model", model_deployment=None)
    assert _netdev(domain_xml(model)) == (
        "user,id=fmnet0,restrict=on"
        ",hostfwd=tcp:127.0.0.1:40001-:8080,hostfwd=tcp:127.0.0.1:40002-:9090"
    )
    assert "spawn=deny" in _arg(domain_xml(model), "-sandbox").split(",")
    # An agent without a model is given no forward at all.
    alone = spec(kind="agent", model_deployment=None)
    assert "guestfwd" not in _netdev(domain_xml(alone))
    assert "spawn=deny" in _arg(domain_xml(alone), "-sandbox").split(",")


@pytest.mark.parametrize(
    "hostile",
    [
        "javascript:alert(1)",
        "http://x/$(id)",
        "http://a b:80",
        "http://gw:80,hostfwd=tcp::22-:22",
        "http://gw:99999",
        "https://gateway.example",
        "http://[::1]:8080",
        "http://" + "a" * 400,
    ],
)
def test_a_gateway_address_that_is_not_a_plain_host_and_port_is_refused(hostile: str) -> None:
    with pytest.raises(InputError):
        domain_xml(spec(kind="agent", model_endpoint=hostile))


@given(st.text(max_size=80))
def test_any_gateway_text_gives_one_forward_or_an_input_error(text: str) -> None:
    try:
        netdev = _netdev(domain_xml(spec(kind="agent", model_endpoint=text)))
    except InputError:
        return
    # One forward, one command: nothing the text says can add an option or a word.
    assert netdev.count("guestfwd=") == 1
    command = netdev.split("-cmd:", 1)[1]
    assert command.startswith("socat STDIO TCP:")
    assert len(command.split(" ")) == 3
    assert "," not in command
