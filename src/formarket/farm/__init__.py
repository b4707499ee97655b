"""The farm: the Celery app and its tasks, the host inventory, placement, the libvirt deployer,
image distribution and the reconciler that drives git's desired deployments and libvirt's
actual domains together. Pure parts (placement, domain XML, the reconcile plan) take their
effects (libvirt connections, the queue, git) as parameters."""
