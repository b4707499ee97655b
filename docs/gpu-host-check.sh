#!/bin/sh
# Check that a libvirt host can give its GPUs to formarket's VMs, and print the `devices:`
# entries of its host inventory (builder/hosts.example.yaml shows where they go).
#
#   sh docs/gpu-host-check.sh [VENDOR]     VENDOR: a PCI vendor id, 10de (NVIDIA) by default
#
# What it verifies, for each display or 3D controller of that vendor:
#   1. the IOMMU is on (/sys/kernel/iommu_groups is not empty): without it, no passthrough;
#   2. the device's IOMMU group, and every other device in that group: a VM is given a group
#      whole, so a group shared with a device the host needs (a disk controller) is unusable;
#   3. the driver it is bound to: vfio-pci is ready; a host driver (nvidia, nouveau) is fine
#      too, as libvirt detaches it at start (managed='yes'), unless the host itself uses it;
#   4. that libvirt sees it (`virsh nodedev-list --cap pci`), which is what the domain names;
#   5. mediated device types (vGPU) the device offers, and mdev instances already created.
# It changes nothing. Run it as root on the host; it needs virsh and lspci.
set -eu

vendor="${1:-10de}"
status=0

if [ -z "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; then
    echo "FAIL: the IOMMU is off (/sys/kernel/iommu_groups is empty)."
    echo "      Turn on VT-d or AMD-Vi in the firmware and boot with intel_iommu=on or amd_iommu=on."
    exit 1
fi
echo "ok: the IOMMU is on"

found=0
echo "devices:"
for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor")" = "0x$vendor" ] || continue
    class="$(cat "$dev/class")"
    case "$class" in 0x0300*|0x0302*) ;; *) continue ;; esac
    found=$((found + 1))
    address="$(basename "$dev")"
    group="$(basename "$(readlink "$dev/iommu_group")")"
    driver="none"
    [ -e "$dev/driver" ] && driver="$(basename "$(readlink "$dev/driver")")"
    name="$(lspci -s "$address" 2>/dev/null | cut -d: -f3- | sed 's/^ *//')"
    echo "  - {model: MODEL, address: \"$address\", iommu_group: $group}   # $name; driver $driver"
    for member in /sys/kernel/iommu_groups/"$group"/devices/*; do
        other="$(basename "$member")"
        [ "$other" = "$address" ] && continue
        mclass="$(cat "$member/class")"
        case "$mclass" in
            0x0403*|0x0300*|0x0302*|0x0c03*) echo "    # group $group also holds $other (class $mclass): given with it" ;;
            *) echo "    # WARN: group $group also holds $other (class $mclass): the host may need it"; status=2 ;;
        esac
    done
    nodedev="pci_$(echo "$address" | tr ':.' '__')"
    if virsh nodedev-dumpxml "$nodedev" >/dev/null 2>&1; then
        echo "    # libvirt sees it as $nodedev"
    else
        echo "    # FAIL: libvirt does not see $nodedev"
        status=1
    fi
    if [ -d "$dev/mdev_supported_types" ]; then
        for type in "$dev"/mdev_supported_types/*; do
            left="$(cat "$type/available_instances" 2>/dev/null || echo '?')"
            echo "    # vGPU type $(basename "$type") ($(cat "$type/name" 2>/dev/null || echo unnamed)), $left more can be made"
        done
    fi
done
for mdev in /sys/bus/mdev/devices/*; do
    [ -e "$mdev" ] || continue
    uuid="$(basename "$mdev")"
    type="$(basename "$(readlink "$mdev/mdev_type")")"
    parent="$(basename "$(dirname "$(dirname "$(readlink -f "$mdev/mdev_type")")")")"
    echo "  - {model: MODEL, mdev_uuid: $uuid, mdev_type: $type}   # a vGPU on $parent"
done

if [ "$found" -eq 0 ]; then
    echo "FAIL: no display or 3D controller of vendor $vendor"
    exit 1
fi
echo "Replace MODEL with the model's name as listings ask for it (H100, L40S, ...)."
exit "$status"
