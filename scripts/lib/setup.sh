# Shared set-up for scripts/test and scripts/demo: Debian packages and the project's .venv.
# Sourced, not run. Works on a fresh Debian machine with nothing but Python >= 3.11.

need_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "evidence-daemon: these Debian packages are missing: ${missing[*]}" >&2
    echo "  install them as root:  apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "==> installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "evidence-daemon: needs Python 3.11 or newer (apt-get install python3)" >&2
  exit 1
}

# ensure_venv EXTRAS: create or reuse .venv and install the project (editable) with EXTRAS.
# Reinstalls only when pyproject.toml changed since the last install.
ensure_venv() {
  local extras="$1" python stamp want
  if [ ! -x .venv/bin/python ]; then
    python=$(find_python)
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
      rm -rf .venv
      need_debian_packages python3-venv
      "$python" -m venv .venv
    fi
  fi
  stamp=.venv/.evidence-installed
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing evidence-daemon and its Python dependencies into .venv" >&2
    if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
           .venv/bin/python -m pip install --disable-pip-version-check -e ".${extras}"; } \
         >.venv/install.log 2>&1; then
      tail -n 30 .venv/install.log >&2
      echo "evidence-daemon: installing Python packages failed (full log: .venv/install.log)" >&2
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
}

# compile_catalogues: the gettext .mo files of the development tree from the checked-in .po
# files (a package build compiles them itself, setup.py). Cheap; run every time.
compile_catalogues() {
  .venv/bin/pybabel compile --domain evidence-daemon --directory evidence_daemon/locale \
    --statistics >/dev/null 2>&1 ||
    { echo "evidence-daemon: compiling the message catalogues failed:" >&2
      .venv/bin/pybabel compile --domain evidence-daemon --directory evidence_daemon/locale >&2
      exit 1; }
}
