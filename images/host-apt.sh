# images/host-apt.sh - the Debian archive this host's own apt uses, for the image builds.
# Sourced (`. images/host-apt.sh`) by build-base.sh and fetch-debs.sh; defines functions only.
#
# The project names no mirror: it takes the one the machine is configured with, so a site with a
# local mirror or an apt proxy needs nothing more.  DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR
# override what is found; DEBIAN_SUITE picks the suite the images are built from.

# host_apt_detect: sets
#   apt_mirror           DEBIAN_MIRROR, else the URI of the host's enabled `deb` entry for its own
#                        codename with component main (only on a Debian host: an Ubuntu archive
#                        does not serve Debian suites)
#   apt_security_mirror  DEBIAN_SECURITY_MIRROR, else the same for <codename>-security
#   apt_http_proxy, apt_https_proxy   Acquire::http(s)::Proxy from the host's apt configuration
#                        (/etc/apt/apt.conf.d), empty when there is none
# Entries come from the one-line format (sources.list, sources.list.d/*.list) and the deb822
# format (sources.list.d/*.sources), wherever `apt-config` says they live.
host_apt_detect() {
    apt_mirror=${DEBIAN_MIRROR:-}
    apt_security_mirror=${DEBIAN_SECURITY_MIRROR:-}
    apt_http_proxy=
    apt_https_proxy=
    _list=/etc/apt/sources.list
    _parts=/etc/apt/sources.list.d/
    if command -v apt-config >/dev/null 2>&1; then
        eval "$(apt-config shell _list Dir::Etc::sourcelist/f _parts Dir::Etc::sourceparts/d \
            apt_http_proxy Acquire::http::Proxy apt_https_proxy Acquire::https::Proxy)"
    fi
    _osr=${HOST_APT_OS_RELEASE:-/etc/os-release}  # another file only in tests
    _id=$( (. "$_osr" 2>/dev/null && echo "${ID:-}") || true)
    _codename=$( (. "$_osr" 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)
    [ "$_id" = debian ] && [ -n "$_codename" ] || return 0

    # "URI SUITE" for every enabled deb entry with component main, both formats
    _entries=$(
        for f in "$_list" "$_parts"*.list; do
            [ -r "$f" ] || continue
            sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" \
                | awk '$1 == "deb" { for (i = 4; i <= NF; i++) if ($i == "main") { print $2, $3; break } }'
        done
        for f in "$_parts"*.sources; do
            [ -r "$f" ] || continue
            awk '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && comps ~ /(^| )main( |$)/ && enabled !~ /^ *no/) {
                        n = split(uris, u, " "); m = split(suites, s, " ")
                        for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
                    }
                    types = uris = suites = comps = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[ \t]/ { next }
                {
                    key = tolower($1); sub(/:$/, "", key); $1 = ""
                    if (key == "types") types = $0
                    else if (key == "uris") uris = $0
                    else if (key == "suites") suites = $0
                    else if (key == "components") comps = $0
                    else if (key == "enabled") enabled = tolower($0)
                }
                END { flush() }' "$f"
        done
    )
    if [ -z "$apt_mirror" ]; then
        apt_mirror=$(echo "$_entries" | awk -v s="$_codename" '$2 == s { print $1; exit }')
    fi
    if [ -z "$apt_security_mirror" ]; then
        apt_security_mirror=$(echo "$_entries" | awk -v s="$_codename-security" '$2 == s { print $1; exit }')
    fi
}

# host_apt_no_mirror_message: why a Debian mirror is needed and how to give one
host_apt_no_mirror_message() {
    echo "no Debian mirror found in this host's apt configuration (/etc/apt/sources.list," \
        "/etc/apt/sources.list.d/*.list, *.sources: an enabled 'deb' entry for the host's own" \
        "Debian codename with component main)."
    echo "Set DEBIAN_MIRROR to the URL of a Debian archive mirror that serves" \
        "${DEBIAN_SUITE:-bookworm} (and DEBIAN_SECURITY_MIRROR to its security archive), e.g." \
        "DEBIAN_MIRROR=http://<your mirror>/debian make up"
}

# host_apt_write_sources ROOT SUITE: point ROOT's apt at apt_mirror (and apt_security_mirror)
host_apt_write_sources() {
    rm -f "$1/etc/apt/sources.list"
    mkdir -p "$1/etc/apt/sources.list.d"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$apt_mirror" "$2" "$2"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$apt_security_mirror" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$apt_security_mirror" "$2"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$1/etc/apt/sources.list.d/debian.sources"
}

# host_apt_proxy_options: apt-get options that carry the host's proxy into a chroot's apt
host_apt_proxy_options() {
    [ -z "$apt_http_proxy" ] || printf ' -o Acquire::http::Proxy=%s' "$apt_http_proxy"
    [ -z "$apt_https_proxy" ] || printf ' -o Acquire::https::Proxy=%s' "$apt_https_proxy"
}
