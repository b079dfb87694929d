#!/usr/bin/env bash
# The store over HTTP: nginx with compose/nginx-server.conf.template (as
# compose/stack.sh and docker-compose.yml run it) serves content-addressed
# files <aa>/<sha256>.<ext> under the prefix of IMGCACHE_PUBLIC_URL with
# immutable caching, Content-Type by extension, nosniff and a CSP without
# scripts; everything else (folders, .tmp/, missing keys, '..' and encoded
# traversal, a symbolic link out of the store) is refused. Loopback only.
# Needs no stack: it does not call it_setup.
. "$ROOT/tests/integration/lib.sh"

STORE=$TESTS_TMP/images
PAGE=$TESTS_TMP/page
mkdir -p "$STORE/.tmp" "$PAGE"
echo '<!doctype html><title>page</title>' > "$PAGE/index.html"

# The fixture images stored as the worker names them.
declare -A KEY=()
for ext in jpg png gif webp; do
    sha=$(sha256sum < "$IMG/avatar.$ext" | cut -c1-64)
    mkdir -p "$STORE/${sha:0:2}"
    cp "$IMG/avatar.$ext" "$STORE/${sha:0:2}/$sha.$ext"
    KEY[$ext]=${sha:0:2}/$sha.$ext
done
# A download in progress, as store.c names it, and a leftover in a shard.
printf 'partial' > "$STORE/.tmp/0123456789abcdef-1.part"
printf 'stray' > "$STORE/${KEY[jpg]%%/*}/stray.txt"
# A link with a valid key's name that leads out of the store.
evil=$(printf 'e%.0s' $(seq 64))
mkdir -p "$STORE/ee"
ln -s /etc/passwd "$STORE/ee/$evil.jpg"

start_nginx "$STORE" /images "$PAGE"
U=$NGINX_URL/images

# header NAME URL: the value of response header NAME (GET), trimmed
header() { curl -s -o /dev/null -D - "$2" | tr -d '\r' | sed -n "s/^$1: //Ip" | head -n 1; }
status() { curl -s --path-as-is -o "$TESTS_TMP/body" -w '%{http_code}' "$1"; }
refused() { # URL: 400, 403 or 404, and no byte of /etc/passwd nor a listing
    local code
    code=$(status "$1")
    case $code in 400|403|404) ;; *) echo "status $code"; return 1 ;; esac
    ! grep -q 'root:\|stray\|\.part\|<a href' "$TESTS_TMP/body"
}

declare -A TYPE=([jpg]=image/jpeg [png]=image/png [gif]=image/gif [webp]=image/webp)
for ext in jpg png gif webp; do
    url=$U/${KEY[$ext]}
    check_eq "$ext: 200" 200 "$(status "$url")"
    check "$ext: the bytes stored" cmp "$TESTS_TMP/body" "$IMG/avatar.$ext"
    check_eq "$ext: Content-Type from the extension" "${TYPE[$ext]}" "$(header Content-Type "$url")"
    check_eq "$ext: cached for a year, immutable" "public, max-age=31536000, immutable" \
        "$(header Cache-Control "$url")"
    check_eq "$ext: X-Content-Type-Options nosniff" nosniff "$(header X-Content-Type-Options "$url")"
    csp=$(header Content-Security-Policy "$url")
    check "$ext: a CSP that forbids scripts ($csp)" \
        bash -c '[[ $1 == *"default-src '"'none'"'"* && $1 != *script-src* && $1 == *sandbox* ]]' _ "$csp"
done
check_eq "a conditional GET answers 304" 304 \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $(header ETag "$U/${KEY[png]}")" "$U/${KEY[png]}")"

missing=$(printf '0%.0s' $(seq 64))
check_eq "a missing key: 404" 404 "$(status "$U/00/$missing.png")"
check_eq "a missing key is not cached as immutable" "" "$(header Cache-Control "$U/00/$missing.png")"
check_eq "a stored file under another extension: 404" 404 "$(status "$U/${KEY[png]%.png}.jpg")"
check_eq "an upper-case key: 404" 404 "$(status "$U/$(echo "${KEY[png]}" | tr a-f A-F)")"

for path in "" / "/${KEY[jpg]%%/*}" "/${KEY[jpg]%%/*}/" /.tmp /.tmp/; do
    check "no listing of the folder /images$path" refused "$U$path"
done
check "a file of .tmp/ (a download in progress) is not served" refused "$U/.tmp/0123456789abcdef-1.part"
check "a stray file in a shard is not served" refused "$U/${KEY[jpg]%%/*}/stray.txt"
check "a symbolic link out of the store is not followed" refused "$U/ee/$evil.jpg"
for path in /images/../../../../etc/passwd /images/%2e%2e/%2e%2e/%2e%2e/etc/passwd \
            /images/..%2f..%2f..%2fetc%2fpasswd "/images/${KEY[jpg]%%/*}/..%2f..%2f..%2f..%2fetc/passwd" \
            /images/%252e%252e/etc/passwd /../../etc/passwd /etc/passwd; do
    check "no traversal: $path" refused "$NGINX_URL$path"
done
check_eq "the page is served at /" 200 "$(status "$NGINX_URL/")"
check "the page's CSP allows no script" \
    bash -c '[[ $1 == *"default-src '"'none'"'"* && $1 != *script-src* ]]' _ "$(header Content-Security-Policy "$NGINX_URL/")"
check_eq "anything else: 404" 404 "$(status "$NGINX_URL/index.html")"

port=${NGINX_URL##*:}
check "nginx listens on 127.0.0.1 only" \
    bash -c '[ "$(ss -Hltn "sport = :$1" | awk "{print \$4}")" = "127.0.0.1:$1" ]' _ "$port"
check "the server block it runs is the template's, rendered" \
    grep -q 'max-age=31536000, immutable' "$TESTS_TMP/nginx/server.conf"
# The same template with docker-compose.yml's values passes `nginx -t`.
dc_env=$(/usr/bin/python3 -c '
import sys, yaml
env = yaml.safe_load(open(sys.argv[1]))["services"]["images"]["environment"]
print(env["NGINX_LISTEN"], env["NGINX_STORE"], env["NGINX_PREFIX"], env["NGINX_PAGE_DIR"])' \
    "$ROOT/compose/docker-compose.yml" 2> "$TESTS_TMP/dc-env.log")
# shellcheck disable=SC2086
sh "$ROOT/compose/nginx.sh" render "$TESTS_TMP/nginx-dc" $dc_env 2> "$TESTS_TMP/nginx-dc.log"
check "docker-compose.yml's rendering ($dc_env) passes nginx -t" \
    /usr/sbin/nginx -t -e stderr -p "$TESTS_TMP/nginx-dc/" -c "$TESTS_TMP/nginx-dc/nginx.conf"

pid=$(read_pid "$TESTS_TMP/nginx/nginx.pid")
sh "$ROOT/compose/nginx.sh" stop "$TESTS_TMP/nginx" 2> /dev/null
nginx_gone() { [ -n "$pid" ] && ! pid_alive "$pid"; }
check "compose/nginx.sh stop stops it (pid ${pid:-none})" nginx_gone
it_done
