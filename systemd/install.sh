#!/bin/sh
# Install the aimedres-async spool daemon as a systemd service. Run as root (no sudo needed:
# `su -c`, or a root shell); safe to run again: what exists is kept or brought up to date.
#
#   systemd/install.sh [--root DIR] [--source PIP_SPEC] [--python PATH] [--no-start]
#
#   --root DIR      install into DIR instead of / (a staging tree or image; starts nothing)
#   --source SPEC   what pip installs into the venv (default: this checkout, with [examples])
#   --python PATH   the interpreter for the venv (default /usr/bin/python3, the system one)
#   --no-start      enable the unit but do not (re)start it
#
# What it does (paths as the unit systemd/aimedres-async.service expects them):
#   user and group  aimedres (systemd-sysusers with /usr/lib/sysusers.d/aimedres-async.conf;
#                   useradd on a system without sysusers.d)
#   venv            /opt/aimedres-async/venv, made with the system python, readable by everyone
#   config          /etc/aimedres-async/aimedres.toml (root:aimedres 0640; kept if it exists)
#                   and the bundled examples in /etc/aimedres-async/training (kept if they exist)
#   folders         /usr/lib/tmpfiles.d/aimedres-async.conf -> /var/lib/aimedres-async/{spool,logs,results}
#   unit            /etc/systemd/system/aimedres-async.service, enabled (and started, on /)
set -eu

ROOT=/
SOURCE=
PYTHON=/usr/bin/python3
START=yes
HERE=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=$(dirname "$HERE")

die() { echo "install.sh: error: $*" >&2; exit 2; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --source) [ $# -ge 2 ] || die "--source needs a pip requirement or path"; SOURCE=$2; shift 2 ;;
        --source=*) SOURCE=${1#--source=}; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a path"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#--python=}; shift ;;
        --no-start) START=no; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (a root shell or \`su -c '$0'\`); sudo is not needed"
[ -d "$ROOT" ] || die "--root $ROOT: no such folder"
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}                       # "" for /, so "$R/etc" is /etc
[ -n "$SOURCE" ] || SOURCE="$CHECKOUT[examples]"
umask 022                         # whatever root's umask: the service user must read the venv

# A clean environment for the interpreter: no pyenv/conda/virtualenv of whoever runs this.
unset PYTHONHOME PYTHONPATH PYENV_VERSION VIRTUAL_ENV CONDA_PREFIX 2>/dev/null || true

# ------------------------------------------------------------------ the system python, with venv
case "$PYTHON" in /*) ;; *) die "--python must be an absolute path, got $PYTHON" ;; esac
[ -x "$PYTHON" ] || die "$PYTHON not found: install python3 (apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); aimedres-async needs Python 3.11 or newer"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ -z "$R" ] && command -v apt-get >/dev/null 2>&1; then
        say "installing python3-venv (Debian/Ubuntu ship python3 without it)"
        apt-get install -y python3-venv >/dev/null
    else
        die "$PYTHON cannot make a venv: install python3-venv (apt-get install python3-venv)"
    fi
fi

# ------------------------------------------------------------------ the service user
# systemd-sysusers where the system has it (every systemd system has /usr/lib/sysusers.d; /etc/
# sysusers.d is missing on stock Debian 12), else useradd. The conf is installed either way, so a
# later systemd-sysusers finds the same user.
if command -v systemd-sysusers >/dev/null 2>&1 && { [ -d "$R/usr/lib/sysusers.d" ] || [ -d "$R/etc/sysusers.d" ]; }; then
    install -D -m 0644 "$HERE/aimedres-async.sysusers.conf" "$R/usr/lib/sysusers.d/aimedres-async.conf"
    systemd-sysusers --root="$ROOT" aimedres-async.conf
    say "user aimedres: systemd-sysusers, /usr/lib/sysusers.d/aimedres-async.conf"
else
    install -D -m 0644 "$HERE/aimedres-async.sysusers.conf" "$R/usr/lib/sysusers.d/aimedres-async.conf"
    if grep -q '^aimedres:' "$R/etc/passwd" 2>/dev/null; then
        say "user aimedres: exists"
    else
        command -v useradd >/dev/null 2>&1 || die "neither systemd-sysusers nor useradd: create the user aimedres yourself"
        prefix=
        [ -z "$R" ] || prefix="--prefix $R"
        # shellcheck disable=SC2086
        useradd $prefix --system --user-group --home-dir /var/lib/aimedres-async --no-create-home \
            --shell /usr/sbin/nologin --comment "aimedres-async spool daemon" aimedres
        say "user aimedres: useradd (no sysusers.d here)"
    fi
fi
uid=$(awk -F: '$1 == "aimedres" { print $3 }' "$R/etc/passwd")
gid=$(awk -F: '$1 == "aimedres" { print $3 }' "$R/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || die "user or group aimedres missing from $R/etc/passwd or $R/etc/group"

# ------------------------------------------------------------------ the venv
VENV=/opt/aimedres-async/venv
install -d -m 0755 "$R/opt" "$R/opt/aimedres-async"
if [ -f "$R$VENV/pyvenv.cfg" ] && ! grep -q "^home = $(dirname "$PYTHON")\$" "$R$VENV/pyvenv.cfg"; then
    say "$VENV was made with another interpreter: making it again with $PYTHON"
    rm -rf "$R$VENV"
fi
[ -f "$R$VENV/pyvenv.cfg" ] || "$PYTHON" -m venv "$R$VENV"
"$R$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SOURCE"
chmod -R a+rX "$R/opt/aimedres-async"
say "venv $VENV: $("$R$VENV/bin/python" -c 'import aimedres_async as a, sys; print("aimedres-async", a.__version__, "on Python", sys.version.split()[0])')"

# ------------------------------------------------------------------ config and training scripts
install -d -m 0755 "$R/etc/aimedres-async"
if [ ! -e "$R/etc/aimedres-async/training" ] && [ -d "$CHECKOUT/examples/training" ]; then
    cp -r "$CHECKOUT/examples/training" "$R/etc/aimedres-async/training"
    chmod -R a+rX,go-w "$R/etc/aimedres-async/training"
    say "examples: /etc/aimedres-async/training"
fi
CONFIG=$R/etc/aimedres-async/aimedres.toml
if [ ! -e "$CONFIG" ]; then
    cat > "$CONFIG" <<'EOF'
# aimedres-async service config (written by systemd/install.sh; edit freely, it is kept).
[supervisor]
max_workers = 2                                  # jobs at once ("auto" = one per CPU)
spool_dir = "/var/lib/aimedres-async/spool"
logs_dir = "/var/lib/aimedres-async/logs"
output_dir = "/var/lib/aimedres-async/results"   # each ticket's job gets --output-dir results/<ticket id>
stop_signal = "SIGINT"
grace_period = "10s"                             # keep the unit's TimeoutStopSec (60s) well above this

[discovery]
enabled = true
roots = ["training"]                             # = /etc/aimedres-async/training
include = ["train_*.py"]

[defaults]
epochs = 10
folds = 5
retries = 1
timeout = "6h"
env = { PYTHONUNBUFFERED = "1" }
EOF
    say "config: /etc/aimedres-async/aimedres.toml (new)"
else
    say "config: /etc/aimedres-async/aimedres.toml (kept)"
fi
chown "0:$gid" "$CONFIG"
chmod 0640 "$CONFIG"

# ------------------------------------------------------------------ state folders and the spool
install -D -m 0644 "$HERE/aimedres-async.tmpfiles.conf" "$R/usr/lib/tmpfiles.d/aimedres-async.conf"
systemd-tmpfiles --root="$ROOT" --create aimedres-async.conf
say "folders: /var/lib/aimedres-async/{spool,logs,results} and the spool's own (systemd-tmpfiles)"

# ------------------------------------------------------------------ the unit
install -D -m 0644 "$HERE/aimedres-async.service" "$R/etc/systemd/system/aimedres-async.service"
if [ -n "$R" ]; then  # what `systemctl enable` does for WantedBy=multi-user.target
    install -d "$R/etc/systemd/system/multi-user.target.wants"
    ln -sfn ../aimedres-async.service "$R/etc/systemd/system/multi-user.target.wants/aimedres-async.service"
    say "unit: /etc/systemd/system/aimedres-async.service, enabled (in $ROOT; nothing started)"
elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --quiet aimedres-async.service
    if [ "$START" = yes ]; then
        systemctl restart aimedres-async.service  # a new venv or unit takes effect; tickets go back to incoming/
        say "unit: enabled and (re)started; \`systemctl status aimedres-async\` shows its counts"
    else
        say "unit: enabled; start it with \`systemctl start aimedres-async\`"
    fi
else
    say "unit: installed; systemd is not running here, so nothing was enabled or started"
fi
say "submit as the service user: runuser -u aimedres -- $VENV/bin/python -m aimedres_async --config /etc/aimedres-async/aimedres.toml submit --job breast_cancer"
