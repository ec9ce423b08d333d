#!/usr/bin/env bash
# Builds the Debian package from this repository with dpkg-deb: the one
# program (mhr, with links under the original names table_allocator_server
# and table_allocator_client), the hook shims at their original paths, udev rule, dnsmasq
# snippet, server config and defaults (conffiles), systemd unit, tmpfiles
# entry, man pages and completions generated from the CLI definitions.
#
#   scripts/build-deb.sh [OUT_DIR]          (default: target/debian)
#
# BIN_DIR=dir   package binaries already built there (mhr, and mhr-docs,
#               which writes the man pages and completions; default: cargo
#               build --release, into target/<host tuple>/release)
# DEB_COMPRESS  dpkg-deb compressor: xz (default), gzip, zstd or none
# Prints the path of the .deb it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
pkg=multihomed-routing
# One program; the original names are links to it.
bins=(table_allocator_server table_allocator_client mhr)

bin_dir=${BIN_DIR:-}
if [ -z "$bin_dir" ]; then
    cargo build --release --locked --bins >&2
    # Cargo builds for the host tuple (.cargo/config.toml).
    bin_dir=target/$(rustc -vV | sed -n 's/^host: //p')/release
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

install -D -m 0755 "$bin_dir/mhr" "$root/usr/sbin/mhr"
strip --strip-unneeded "$root/usr/sbin/mhr"
ln -s mhr "$root/usr/sbin/table_allocator_server"
ln -s mhr "$root/usr/sbin/table_allocator_client"
install -D -m 0644 contrib/dhcp/multihomed-routing "$root/etc/dhcp/dhclient-enter-hooks.d/multihomed-routing"
install -D -m 0755 contrib/network/multihomed-routing "$root/etc/network/if-up.d/multihomed-routing"
install -D -m 0644 contrib/udev/70-multihomed-routing.rules "$root/usr/lib/udev/rules.d/70-multihomed-routing.rules"
install -D -m 0644 contrib/network/interfaces.d/multihomed-routing "$root/etc/network/interfaces.d/multihomed-routing"
install -D -m 0644 contrib/dnsmasq/multihomed-routing.conf "$root/etc/dnsmasq.d/multihomed-routing.conf"
install -D -m 0644 examples/server_config.json "$root/etc/table_allocator_server_config.json"
install -D -m 0644 contrib/default/multihomed-routing "$root/etc/default/multihomed-routing"
install -D -m 0644 contrib/systemd/table-allocator-server.service "$root/usr/lib/systemd/system/table-allocator-server.service"
install -D -m 0644 contrib/systemd/mhr-agent.service "$root/usr/lib/systemd/system/mhr-agent.service"
install -D -m 0644 contrib/agent/agent.json "$root/etc/multihomed-routing/agent.json"
install -D -m 0644 contrib/dhcpcd/90-multihomed-routing "$root/usr/lib/dhcpcd/dhcpcd-hooks/90-multihomed-routing"
install -D -m 0755 contrib/udhcpc/multihomed-routing "$root/usr/share/multihomed-routing/udhcpc.script"
install -D -m 0644 contrib/track/track.json "$root/usr/share/doc/multihomed-routing/examples/track.json"
install -D -m 0644 contrib/networkd/multihomed-routing.conf "$root/usr/lib/systemd/networkd.conf.d/multihomed-routing.conf"
install -d -m 0755 "$root/etc/multihomed-routing/track.d"
install -D -m 0644 contrib/tmpfiles/multihomed-routing.conf "$root/usr/lib/tmpfiles.d/multihomed-routing.conf"
install -D -m 0755 scripts/lab.sh "$root/usr/share/multihomed-routing/lab.sh"

# Man pages and completions, generated at build time from the CLI
# definitions (mhr-docs is not installed).
"$bin_dir/mhr-docs" "$stage/docs" >/dev/null
for page in "$stage"/docs/man/*; do
    name=$(basename "$page")
    dir="$root/usr/share/man/man${name##*.}"
    install -D -m 0644 "$page" "$dir/$name"
    gzip -9n "$dir/$name"
done
for b in "${bins[@]}"; do
    install -D -m 0644 "$stage/docs/completions/$b.bash" "$root/usr/share/bash-completion/completions/$b"
    install -D -m 0644 "$stage/docs/completions/_$b" "$root/usr/share/zsh/vendor-completions/_$b"
    install -D -m 0644 "$stage/docs/completions/$b.fish" "$root/usr/share/fish/vendor_completions.d/$b.fish"
done
doc=$root/usr/share/doc/$pkg
install -D -m 0644 README.md "$doc/README.md"
install -m 0644 docs/*.md "$doc/"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $pkg
License: GPL-2.0-or-later
 On Debian systems the full text is in /usr/share/common-licenses/GPL-2.
COPYRIGHT

# Maintainer: Debian's DEBFULLNAME/DEBEMAIL, else the builder's git identity.
name=${DEBFULLNAME:-$(git config user.name 2>/dev/null || true)}
email=${DEBEMAIL:-$(git config user.email 2>/dev/null || true)}
if [ -z "$name" ] || [ -z "$email" ]; then
    echo "build-deb: set DEBFULLNAME and DEBEMAIL (or git's user.name/email) for the Maintainer field" >&2
    exit 2
fi
maintainer="$name <$email>"
# The Debian changelog, from CHANGELOG.md's newest entry.
{
    echo "$pkg ($version) unstable; urgency=medium"
    echo
    awk '/^## /{n++} n==1 && /^- /{sub(/^- /, "  * "); print; next} n==1 && /^  /{print "  " $0} n>1{exit}' CHANGELOG.md
    echo
    echo " -- $maintainer  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} >"$stage/changelog.Debian"
gzip -9n -c "$stage/changelog.Debian" >"$doc/changelog.Debian.gz"
install -m 0644 CHANGELOG.md "$doc/CHANGELOG.md"

# libc: linked in statically (.cargo/config.toml), the package records
# which glibc it carries; linked dynamically (another build), it depends on
# the newest symbol version the binaries need.
glibc=$({ objdump -T "$root"/usr/sbin/mhr 2>/dev/null || true; } | { grep -o 'GLIBC_[0-9.]*' || true; } | sed 's/GLIBC_//' | sort -uV | tail -n1)
if [ -n "$glibc" ]; then
    libc="Depends: libc6 (>= $glibc), libgcc-s1"
else
    libc="Built-Using: glibc (= $(dpkg-query -W -f='${source:Version}' libc6))"
fi
mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: $maintainer
Section: net
Priority: optional
$libc
Recommends: isc-dhcp-client, ifupdown, dnsmasq
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: policy routing for Linux hosts with several uplinks
 Every interface address gets its own routing table, leased from
 table_allocator_server. mhr agent owns the host's routing: it gives every
 uplink address its table, rules and routes, follows router
 advertisements, tracks each uplink's health and moves unbound traffic
 off a dead one; hooks for dhclient, ifupdown, NetworkManager, dhcpcd,
 udhcpc and udev report to it, and dnsmasq gets per-interface name
 servers. table_allocator_client stays for the original's scripts.
CONTROL
# Everything under /etc is a conffile (Debian policy): `remove` keeps the
# hooks, which do nothing once mhr is gone (the shims test -x first);
# `purge` takes them.
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
install -m 0755 contrib/debian/postinst contrib/debian/prerm contrib/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/${pkg}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
