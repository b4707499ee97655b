"""Applying one planned step to the image: its writes go into a new, empty layer folder.

COPY, RUN, INSTALL, WORKDIR and USER run inside the sandbox (see `sandbox.py`), so paths
resolve inside the image, never on the host. ENV and the service files are written by the
builder straight into the step's fresh layer folder, which holds nothing it did not create.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from formarket.builder.plan import BaseRef, Command, PlannedFile, PlannedStep
from formarket.builder.sandbox import POLICY_RC_D, Sandbox
from formarket.process import Runner
from formarket.schemas.formfile import FormfileUser

__all__ = ["StepRunner", "hash_password"]

# Creates or updates a USER account inside the image. Every value arrives as an argument (the
# parser has validated each against its pattern), and the password hash on stdin, so neither
# passes through a shell's parsing nor appears in a process list or the build log.
_ACCOUNT_SCRIPT = r"""
set -eu
tool=$1 user=$2 shell=$3 groups=$4 sudo=$5 lock=$6 expire=$7 keys=$8 pwauth=$9 noroot=${10}
home=/home/$user
IFS=: read -r _name hash
if [ "$sudo" = 1 ]; then groups=${groups:+$groups,}sudo; fi

# Rewrite one field of the line of $2 in file $1 (an /etc/passwd-style table) with awk.
set_field() {
  awk -F: -v OFS=: -v key="$2" -v n="$3" -v value="$4" \
    '$1 == key { $n = value } { print }' "$1" > "$1.new"
  cat "$1.new" > "$1"; rm -f "$1.new"
}
free_id() {  # the first id from 1000 up that column 3 of $1 does not use
  id=1000; while cut -d: -f3 "$1" | grep -qx "$id"; do id=$((id + 1)); done; echo "$id"
}

if [ "$tool" = shadow ]; then
  grep -q "^$user:" /etc/passwd || useradd -m -d "$home" -s "$shell" -U "$user"
  old_ifs=$IFS; IFS=,
  for group in $groups; do groupadd -f "$group"; usermod -a -G "$group" "$user"; done
  IFS=$old_ifs
  echo "$user:$hash" | chpasswd -e
else
  # busybox-static has no adduser: the account tables are edited directly.
  if ! grep -q "^$user:" /etc/passwd; then
    gid=$(free_id /etc/group); uid=$(free_id /etc/passwd)
    echo "$user:x:$gid:" >> /etc/group
    echo "$user:x:$uid:$gid::$home:$shell" >> /etc/passwd
    echo "$user:!:0:0:99999:7:::" >> /etc/shadow
    mkdir -p "$home"; chown "$uid:$gid" "$home"; chmod 700 "$home"
  fi
  old_ifs=$IFS; IFS=,
  for group in $groups; do
    grep -q "^$group:" /etc/group || echo "$group:x:$(free_id /etc/group):" >> /etc/group
    members=$(grep "^$group:" /etc/group | cut -d: -f4)
    case ",$members," in
      *",$user,"*) ;;
      ,,) set_field /etc/group "$group" 4 "$user" ;;
      *) set_field /etc/group "$group" 4 "$members,$user" ;;
    esac
  done
  IFS=$old_ifs
  set_field /etc/shadow "$user" 2 "$hash"
  set_field /etc/shadow "$user" 3 "$(( $(date +%s) / 86400 ))"
fi
if [ "$lock" = 1 ]; then set_field /etc/shadow "$user" 2 "!$hash"; fi
if [ "$expire" = 1 ]; then set_field /etc/shadow "$user" 3 0; fi
if [ "$sudo" = 1 ]; then
  mkdir -p /etc/sudoers.d
  echo "$user ALL=(ALL:ALL) ALL" > "/etc/sudoers.d/formfile-$user"
  chmod 0440 "/etc/sudoers.d/formfile-$user"
fi
if [ -n "$keys" ]; then
  mkdir -p "$home/.ssh"
  printf '%s\n' "$keys" | tr ',' '\n' > "$home/.ssh/authorized_keys"
  chmod 700 "$home/.ssh"; chmod 600 "$home/.ssh/authorized_keys"
  chown -R "$(grep "^$user:" /etc/passwd | cut -d: -f3,4)" "$home/.ssh"
fi
mkdir -p /etc/ssh/sshd_config.d
{ [ "$pwauth" = 1 ] && echo "PasswordAuthentication yes" || echo "PasswordAuthentication no"
  [ "$noroot" = 1 ] && echo "PermitRootLogin no" || echo "PermitRootLogin prohibit-password"
} > /etc/ssh/sshd_config.d/formfile.conf
"""


def hash_password(runner: Runner, user: FormfileUser) -> str:
    """A SHA-512 crypt hash of the user's password; a given `$6$` hash is kept as it is."""
    clear = user.passwd.get_secret_value()
    if user.password_is_hashed:
        return clear
    # The clear text goes to openssl on stdin, never in argv; `quiet` keeps the hash out of
    # the log too.
    done = runner.run(["openssl", "passwd", "-6", "-stdin"], input=clear.encode(), quiet=True)
    return done.stdout.strip()


def _flag(value: bool) -> str:
    return "1" if value else "0"


def write_files(upper: Path, files: Sequence[PlannedFile]) -> None:
    """Write the builder's own files into a fresh layer folder (no links exist there yet)."""
    for item in files:
        target = upper / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if item.link is not None:
            target.symlink_to(item.link)
            continue
        target.write_text(item.content)
        os.chmod(target, item.mode)


class StepRunner:
    """Runs each kind of step in a sandbox over the layers below it."""

    def __init__(self, sandbox: Sandbox, runner: Runner, base: BaseRef, context: Path) -> None:
        self.sandbox = sandbox
        self.runner = runner
        self.base = base
        self.context = context

    def apply(self, step: PlannedStep, lowers: Sequence[Path], upper: Path) -> None:
        upper.mkdir(parents=True, exist_ok=True)
        if step.kind == "copy":
            self.sandbox.copy(lowers, upper, self.context, step.copies)
        elif step.kind in ("run", "workdir"):
            self.sandbox.run(lowers, upper, step.commands)
        elif step.kind == "install":
            self.sandbox.run(
                lowers,
                upper,
                step.commands,
                network=True,
                prepare={"/usr/sbin/policy-rc.d": POLICY_RC_D},
            )
        elif step.kind in ("env", "service"):
            write_files(upper, step.files)
        elif step.kind == "user":
            assert step.user is not None
            self._user(step.user, lowers, upper)
        else:  # pragma: no cover - the plan's kinds are a closed set
            raise AssertionError(step.kind)

    def _user(self, user: FormfileUser, lowers: Sequence[Path], upper: Path) -> None:
        hashed = hash_password(self.runner, user)
        argv = (
            "/bin/sh",
            "-c",
            _ACCOUNT_SCRIPT,
            "formarket-user",
            self.base.accounts,
            user.username,
            user.shell,
            ",".join(user.groups),
            _flag(user.sudo),
            _flag(user.lock_passwd),
            _flag(user.chpasswd_expire),
            ",".join(user.ssh_authorized_keys),
            _flag(user.ssh_pwauth),
            _flag(user.disable_root),
        )
        env = (("PATH", self.base.path),)
        stdin = f"{user.username}:{hashed}\n".encode()
        self.sandbox.run(lowers, upper, (Command(argv=argv, env=env),), stdin=stdin, quiet=True)
