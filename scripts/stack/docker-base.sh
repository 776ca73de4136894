#!/usr/bin/env bash
# Local base images for a Docker engine that cannot reach a registry (CI, air-gapped
# hosts): `debian:bookworm-slim`, the runtime base of Raven's Dockerfile, made from
# Debian's own packages with debootstrap, the way the official image is made
# (debuerreotype): a minbase root file system, slimmed (no documentation, manuals or
# locales; apt keeps no caches; services do not start during package installs), then
# `docker import`ed.
#
#   scripts/stack/docker-base.sh            # import the image unless the engine has it
#
# An image the engine already has is never replaced, so a real debian:bookworm-slim
# pulled from Docker Hub wins. The root file system is cached as a tarball in
# RAVEN_DOCKER_CACHE (default /var/cache/raven-docker), so a pruned engine gets it back
# in seconds instead of a new debootstrap (about 30 s and 30 MB of downloads); after 30
# days it is made anew.
#
# Settings: DEBIAN_MIRROR (default: this machine's apt mirror, else deb.debian.org),
# DEBIAN_RELEASE (bookworm).
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
. "$(dirname "$0")/lib.sh"

release="${DEBIAN_RELEASE:-bookworm}"
image="debian:${release}-slim"
cache="${RAVEN_DOCKER_CACHE:-/var/cache/raven-docker}"
tarball="$cache/debian-${release}-slim.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
  say "base image $image: present"
  exit 0
fi

# This machine's Debian mirror (deb822 sources or a sources.list line), else the CDN.
host_mirror() {
  {
    sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources
    sed -n 's/^deb[[:space:]]\+\(\S*\/debian\)[[:space:]].*/\1/p' /etc/apt/sources.list
  } 2>/dev/null | head -n 1 || true
}

build_rootfs() {
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  local mirror root
  mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  root="$(mktemp -d)"
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -rf '$root'" EXIT
  step "debootstrap --variant=minbase $release from $mirror"
  debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 20 "$root.log" >&2
    die "debootstrap failed (log above)"
  }
  rm -f "$root.log"

  # What debuerreotype's minimizing config does for the official images.
  cat >"$root/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
# Package installs in an image build must not start services.
exit 101
EOF
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Slim: no documentation (copyrights stay), manuals or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
# Images keep no package caches: every layer that installs packages stays small.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::GzipIndexes "true";\nAcquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # The files the path-excludes above would not have installed, and what debootstrap
  # leaves behind (downloaded packages, package lists, logs).
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  # The official sources: the image must not depend on this machine's mirror.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  : >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  mkdir -p "$cache"
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
  mv -f "$tarball.tmp" "$tarball"
  rm -rf "$root"
  trap - EXIT
}

# A month-old root file system misses Debian's security updates: made anew.
if [ -z "$(find "$tarball" -mtime -30 2>/dev/null)" ]; then build_rootfs; fi
step "docker import $tarball as $image"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --change "LABEL org.opencontainers.image.description=\"$image bootstrapped from Debian's packages by scripts/stack/docker-base.sh\"" \
  "$tarball" "$image" >/dev/null
say "base image $image: $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
