"""A deployment's libvirt domain: its XML, and the formarket record it carries. Pure.

The domain's `<metadata>` holds a `formarket` element in formarket's own XML namespace: the
deployment, the listing and image it runs, and where its ports are forwarded. `actual()` reads
it back from whatever libvirt reports, so the farm needs no database of what runs where.

Ports are forwarded by qemu's user-mode network (`hostfwd`), passed through
`<qemu:commandline>`: libvirt 9.0's `<interface type='user'>` cannot forward ports. That network
is restricted (`restrict=on`): the guest reaches no address of the host or beyond it, only what
is forwarded explicitly. A model gets nothing but its hostfwd; an agent also gets one guestfwd,
`GUEST_GATEWAY`, where qemu runs `socat` for each connection to carry it to the gateway, so the
gateway is the one place an agent can call. (libvirt's network filters act on tap and bridge
devices; they never see the packets of qemu's user network, so they cannot do this.) The XML is
built with ElementTree, so no value is ever pasted into markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from xml.etree import ElementTree as ET

from formarket.errors import InputError
from formarket.farm.devices import DEVICE_KEY, GpuDevice, hostdev
from formarket.schemas._types import LISTING_ID_PATTERN, SEMVER_PATTERN
from formarket.schemas.usage import DEPLOYMENT_PATTERN

__all__ = [
    "DOMAIN_PREFIX",
    "GUEST_GATEWAY",
    "NAMESPACE",
    "QEMU_NAMESPACE",
    "SLOTS",
    "DomainRecord",
    "DomainSpec",
    "MetadataError",
    "domain_name",
    "domain_xml",
    "instance_name",
    "read_metadata",
]

NAMESPACE = "https://formarket.dev/xmlns/domain/1"
QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
DOMAIN_PREFIX = "formarket-"
# libvirt's own domain XML is a few KiB; anything far larger is not from libvirt.
MAX_XML_BYTES = 1 << 20

ET.register_namespace("formarket", NAMESPACE)
ET.register_namespace("qemu", QEMU_NAMESPACE)

_BUILD_ID = re.compile(r"^[0-9a-f]{8,128}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")
_DEPLOYMENT = re.compile(DEPLOYMENT_PATTERN)
_LISTING = re.compile(LISTING_ID_PATTERN)
_SEMVER = re.compile(SEMVER_PATTERN)
_MAX_PORTS = 64
_MAX_DEVICES = 64
_DEVICE_KEY = re.compile(DEVICE_KEY)
_ENDPOINT = re.compile(
    r"^https?://[A-Za-z0-9.\[\]:-]{1,253}(?::[0-9]{1,5})?(?:/[A-Za-z0-9._/-]*)?$"
)
# The gateway as the host running qemu reaches it: it becomes words of a command qemu runs.
_FORWARD = re.compile(
    r"^http://([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::([0-9]{1,5}))?/?$"
)
# qemu's seccomp sandbox, as libvirt sets it for every domain it starts. An agent's forward
# has qemu start a process for each connection, which spawn=deny (and elevateprivileges=deny,
# tried: glib's spawn then fails silently) forbids, so an agent's domain is sandboxed without
# those two. The hosts turn libvirt's own sandbox off (`seccomp_sandbox = 0` in qemu.conf)
# for the domains to bring theirs: with libvirt's on as well, both filters apply and an agent
# cannot reach the gateway (closed, not open).
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
AGENT_SANDBOX = "on,obsolete=deny,resourcecontrol=deny"
# Where an agent finds the gateway from inside its VM: an address of qemu's user network that
# nothing else answers on, forwarded to the gateway.
GUEST_GATEWAY = "10.0.2.100"

Kind = Literal["agent", "model"]


class MetadataError(InputError):
    """A domain's XML is not something libvirt would have written."""


SLOTS = (0, 1)


def instance_name(deployment_id: str, slot: int = 0) -> str:
    """What a deployment's VM in `slot` is called in libvirt's names (its volumes start with
    it). An upgrade starts the new version in the slot the old one does not use, so both run
    side by side until the gateway's route has moved; `_` never occurs in a deployment id."""
    return deployment_id if slot == 0 else f"{deployment_id}_{slot}"


def domain_name(deployment_id: str, slot: int = 0) -> str:
    return DOMAIN_PREFIX + instance_name(deployment_id, slot)


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """What a formarket domain says about itself; `running` is None when not asked."""

    deployment_id: str
    kind: Kind
    listing_id: str
    listing_version: str
    build_id: str
    model_deployment: str | None
    address: str
    ports: tuple[tuple[int, int], ...]  # (guest, host), the first EXPOSEd port first
    running: bool | None = None
    model_endpoint: str | None = None  # an agent's: the gateway its model calls are forwarded to
    slot: int = 0  # which of the deployment's two VMs this is (see `instance_name`)
    devices: tuple[str, ...] = ()  # the GPUs it holds, by key (a PCI address or mdev:<uuid>)

    @property
    def endpoint(self) -> str | None:
        """`http://<address>:<host port of the first EXPOSEd port>`, if it exposes any."""
        if not self.ports:
            return None
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.ports[0][1]}"


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """Everything a deployment's domain is made of (paths are on the host)."""

    deployment_id: str
    kind: Kind
    listing_id: str
    listing_version: str
    model_deployment: str | None
    build_id: str
    domain_type: Literal["qemu", "kvm"]
    vcpus: int
    memory_mib: int
    kernel: str
    initrd: str
    disk: str  # the deployment's qcow2 overlay over the cached image
    config_disk: str | None
    kernel_cmdline: str
    ports: tuple[tuple[int, int], ...]  # (guest, host)
    address: str  # where the forwarded ports listen
    console_log: str
    model_endpoint: str | None = None  # an agent's: the gateway its model calls are forwarded to
    slot: int = 0
    data_disk: str | None = None  # a model's weights, shared read-only with other domains
    gpus: tuple[GpuDevice, ...] = ()  # passed through whole, and recorded as held

    @property
    def name(self) -> str:
        return domain_name(self.deployment_id, self.slot)

    def record(self) -> DomainRecord:
        return DomainRecord(
            deployment_id=self.deployment_id,
            kind=self.kind,
            listing_id=self.listing_id,
            listing_version=self.listing_version,
            build_id=self.build_id,
            model_deployment=self.model_deployment,
            address=self.address,
            ports=self.ports,
            model_endpoint=self.model_endpoint,
            slot=self.slot,
            devices=tuple(device.key for device in self.gpus),
        )


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _q(tag: str) -> str:
    return f"{{{NAMESPACE}}}{tag}"


def _metadata(parent: ET.Element, record: DomainRecord) -> None:
    meta = _sub(_sub(parent, "metadata"), _q("formarket"), version="1")
    _sub(meta, _q("deployment"), record.deployment_id)
    _sub(meta, _q("kind"), record.kind)
    _sub(meta, _q("listing"), version=record.listing_version, id=record.listing_id)
    _sub(meta, _q("build"), record.build_id)
    if record.model_deployment is not None:
        _sub(meta, _q("model-deployment"), record.model_deployment)
    if record.model_endpoint is not None:
        _sub(meta, _q("model-endpoint"), record.model_endpoint)
    if record.slot != 0:
        _sub(meta, _q("slot"), str(record.slot))
    ports = _sub(meta, _q("ports"), address=record.address)
    for guest, host in record.ports:
        _sub(ports, _q("port"), guest=str(guest), host=str(host))
    if record.devices:
        # What it holds is read back from here: placement gives no device held by a domain.
        held = _sub(meta, _q("devices"))
        for key in record.devices:
            _sub(held, _q("device"), key=key)


def _disk(devices: ET.Element, path: str, fmt: str, dev: str, *, readonly: bool) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=dev, bus="virtio")
    if readonly:
        _sub(disk, "readonly")


def domain_xml(spec: DomainSpec) -> str:
    """The libvirt domain XML of a deployment (direct kernel boot, serial log to a file)."""
    if _matches(_ADDRESS, spec.address) is None:
        # It becomes part of a qemu option: a comma would add options of its own.
        raise InputError(f"{spec.address!r} is not a host name or an IP address")
    root = ET.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    _metadata(root, spec.record())
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus))
    os_ = _sub(root, "os")
    # `pc` (i440fx) gives the pci.0 bus the network device below is plugged into.
    _sub(os_, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_, "kernel", spec.kernel)
    _sub(os_, "initrd", spec.initrd)
    _sub(os_, "cmdline", spec.kernel_cmdline)
    # A VM that stops stays stopped: the reconciler notices and decides what to do.
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(root, event, "destroy")
    devices = _sub(root, "devices")
    _disk(devices, spec.disk, "qcow2", "vda", readonly=False)
    if spec.config_disk is not None:
        _disk(devices, spec.config_disk, "raw", "vdb", readonly=True)
    if spec.data_disk is not None:
        # After the config disk: the guest names disks in this order, and its init reads the
        # second as the config disk; it finds this one by its label.
        _disk(devices, spec.data_disk, "raw", "vdc", readonly=True)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=spec.console_log)
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="file")
    _sub(console, "source", path=spec.console_log)
    _sub(console, "target", type="serial", port="0")
    for gpu in spec.gpus:
        devices.append(hostdev(gpu))
    _sub(_sub(devices, "video"), "model", type="none")
    _sub(devices, "memballoon", model="none")
    forwards = "".join(f",hostfwd=tcp:{spec.address}:{host}-:{guest}" for guest, host in spec.ports)
    sandbox = SANDBOX
    if spec.kind == "agent" and spec.model_endpoint is not None:
        forwards += _gateway_forward(spec.model_endpoint)
        sandbox = AGENT_SANDBOX
    args = _sub(root, f"{{{QEMU_NAMESPACE}}}commandline")
    for value in (
        "-netdev",
        f"user,id=fmnet0,restrict=on{forwards}",
        "-device",
        "virtio-net-pci,netdev=fmnet0,bus=pci.0,addr=0x10",
        "-sandbox",
        sandbox,
    ):
        _sub(args, f"{{{QEMU_NAMESPACE}}}arg", value=value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def _gateway_forward(gateway: str) -> str:
    """The guestfwd that carries each connection to GUEST_GATEWAY:80 to `gateway`. qemu runs
    the command for every connection (a chardev target would carry only the first one)."""
    found = _FORWARD.fullmatch(gateway)
    port = _port(found.group(2) or "80") if found else None
    if found is None or port is None:
        raise InputError(
            f"{gateway!r} is not a gateway address an agent's VM can be forwarded to",
            hint="FORMARKET_GATEWAY_URL must be the gateway's own http://host:port listener,"
            " as the VM hosts reach it",
        )
    return f",guestfwd=tcp:{GUEST_GATEWAY}:80-cmd:socat STDIO TCP:{found.group(1)}:{port}"


def _port(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    value = int(text)
    return value if 1 <= value <= 65535 else None


def _matches(pattern: re.Pattern[str], text: str | None, limit: int = 256) -> str | None:
    if text is None or len(text) > limit or pattern.fullmatch(text) is None:
        return None
    return text


def _record(meta: ET.Element) -> DomainRecord | None:
    deployment = _matches(_DEPLOYMENT, meta.findtext(_q("deployment")))
    kind = meta.findtext(_q("kind"))
    listing = meta.find(_q("listing"))
    build = _matches(_BUILD_ID, meta.findtext(_q("build")))
    ports_el = meta.find(_q("ports"))
    if listing is None or ports_el is None or deployment is None or build is None:
        return None
    listing_id = _matches(_LISTING, listing.get("id"))
    version = _matches(_SEMVER, listing.get("version"))
    address = _matches(_ADDRESS, ports_el.get("address"))
    model_text = meta.findtext(_q("model-deployment"))
    model = _matches(_DEPLOYMENT, model_text)
    if kind not in ("agent", "model") or listing_id is None or version is None or address is None:
        return None
    if model_text is not None and model is None:
        return None
    endpoint_text = meta.findtext(_q("model-endpoint"))
    endpoint = _matches(_ENDPOINT, endpoint_text, limit=300)
    if endpoint_text is not None and endpoint is None:
        return None
    slot_text = meta.findtext(_q("slot"))
    slot = 0 if slot_text is None else {"0": 0, "1": 1}.get(slot_text.strip(), -1)
    if slot < 0:
        return None
    port_elements = ports_el.findall(_q("port"))
    if len(port_elements) > _MAX_PORTS:
        return None
    ports = []
    for element in port_elements:
        guest, host = _port(element.get("guest")), _port(element.get("host"))
        if guest is None or host is None:
            return None
        ports.append((guest, host))
    held_el = meta.find(_q("devices"))
    held: list[str] = []
    if held_el is not None:
        elements = held_el.findall(_q("device"))
        if len(elements) > _MAX_DEVICES:
            return None
        for element in elements:
            key = _matches(_DEVICE_KEY, element.get("key"))
            if key is None:
                return None
            held.append(key)
    return DomainRecord(
        deployment_id=deployment,
        kind="agent" if kind == "agent" else "model",
        listing_id=listing_id,
        listing_version=version,
        build_id=build,
        model_deployment=model,
        address=address,
        ports=tuple(ports),
        model_endpoint=endpoint,
        slot=slot,
        devices=tuple(held),
    )


def read_metadata(xml: str) -> DomainRecord | None:
    """The formarket record of a domain's XML; None when the domain is not formarket's or its
    record is incomplete. MetadataError when the text is not a domain XML at all."""
    if len(xml) > MAX_XML_BYTES:
        raise MetadataError(f"a domain XML of {len(xml)} characters is not from libvirt")
    # libvirt never writes a DTD; refusing one rules out entity expansion attacks.
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise MetadataError("a domain XML with a DTD is not from libvirt")
    try:
        root = ET.fromstring(xml)  # noqa: S314 - size-capped, no DTD
    except ET.ParseError as exc:
        raise MetadataError(f"the domain XML does not parse: {exc}") from exc
    if root.tag != "domain":
        raise MetadataError(f"expected a <domain>, found <{root.tag[:64]}>")
    meta = root.find(f"metadata/{_q('formarket')}")
    if meta is None:
        return None
    return _record(meta)
