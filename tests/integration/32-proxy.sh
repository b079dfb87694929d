#!/usr/bin/env bash
# Proxies. The environment's proxy variables (http_proxy, HTTPS_PROXY,
# ALL_PROXY...) are ignored: through a proxy the guard would only see the
# proxy's address. Only IMGCACHE_HTTP_PROXY sets one, and then each target
# (and each redirect's) is resolved and checked before anything is sent to
# the proxy. The proxy here is a listener on 127.0.0.1 that records request
# lines and forwards only to 127.0.0.1.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

for n in env-ok via-proxy redirected-ok; do media_image "$MEDIA/$n.png" "imgcache-proxy-$n"; done
start_media "$MEDIA"
M=$MEDIA_URL   # start_media trusted its origin
export IMGCACHE_RETRY_BACKOFF=100ms IMGCACHE_CONNECT_TIMEOUT=2s IMGCACHE_FETCH_TIMEOUT=5s
export IMGCACHE_BREAKER_THRESHOLD=100000

PROXY_LOG="$TESTS_TMP/proxy-requests.log"
: > "$PROXY_LOG"
cat > "$TESTS_TMP/proxy.py" <<'PY'
import http.server, sys, urllib.error, urllib.parse, urllib.request

log = open(sys.argv[1], "a", buffering=1)

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write(self.requestline + "\n")
        target = urllib.parse.urlsplit(self.path)
        # a test proxy: it never connects anywhere but this machine
        if target.scheme != "http" or target.hostname != "127.0.0.1":
            self.send_error(403)
            return
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
        try:
            r = opener.open(self.path, timeout=10)
            status, headers, body = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        self.send_response(status)
        for k in ("Content-Type", "Location"):
            if headers.get(k):
                self.send_header(k, headers[k])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self):
        log.write(self.requestline + "\n")
        self.send_error(403)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print("PROXY_PORT=%d" % server.server_address[1], flush=True)
server.serve_forever()
PY
python3 "$TESTS_TMP/proxy.py" "$PROXY_LOG" < /dev/null > "$TESTS_TMP/proxy.out" 2> "$TESTS_TMP/proxy.err" &
_it_track "$!"
wait_for 15 grep -q '^PROXY_PORT=' "$TESTS_TMP/proxy.out" || it_bail "the proxy did not start" "$TESTS_TMP/proxy.err"
P=http://127.0.0.1:$(sed -n 's/^PROXY_PORT=//p' "$TESTS_TMP/proxy.out")
check "the proxy forwards" curl -fsS -o /dev/null -x "$P" "$M/env-ok.png"
check_eq "the proxy records request lines" 1 "$(grep -c "GET $M/env-ok.png" "$PROXY_LOG")"
: > "$PROXY_LOG"

# what reached the proxy that names one of the internal targets
internal_seen() { grep -E '169\.254\.169\.254|10\.1\.2\.3|127\.0\.0\.1:1/' "$PROXY_LOG"; }
refused() {
    q "SELECT error_class, permanent FROM image_failures WHERE source_url = '$1'"
}

# (before the proxy variables are set: this shell's curl would obey them)
media_fault /to-internal.png redirect "location=http://10.1.2.3/redirected.png"
media_fault /to-ok.png redirect "location=/redirected-ok.png"

# ---- 1. proxy variables of the environment: ignored --------------------------------
export http_proxy=$P HTTP_PROXY=$P https_proxy=$P HTTPS_PROXY=$P ALL_PROXY=$P all_proxy=$P
export no_proxy= NO_PROXY=
ENV_INTERNAL=("http://169.254.169.254/latest/meta-data/env.png" "http://10.1.2.3/env.png")
publish_url "$M/env-ok.png" "${ENV_INTERNAL[@]}" > /dev/null
start_worker env --drain
check "the worker (proxy variables set) drains and exits 0" wait_worker env 60
check_eq "the image is cached" 1 "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$M/env-ok.png'")"
check_eq "the proxy variables were ignored: the proxy saw nothing" "" "$(cat "$PROXY_LOG")"
for u in "${ENV_INTERNAL[@]}"; do
    check_eq "refused: $u" "refused_address|t" "$(refused "$u")"
done

# ---- 2. IMGCACHE_HTTP_PROXY: targets checked before anything reaches it -----------
# the proxy's credentials are a secret like any other
export IMGCACHE_HTTP_PROXY="http://imgcache:pw-s3cret@${P#http://}"
PROXY_INTERNAL=("http://169.254.169.254/latest/meta-data/iam.png" "http://10.1.2.3/p.png"
                "http://127.0.0.1:1/p.png" "$M/to-internal.png")
publish_url "$M/via-proxy.png" "$M/to-ok.png" "${PROXY_INTERNAL[@]}" > /dev/null
start_worker proxied --drain --log-level debug
check "the worker (IMGCACHE_HTTP_PROXY) drains and exits 0" wait_worker proxied 60
for u in "$M/via-proxy.png" "$M/to-ok.png"; do
    check_eq "cached through the proxy: $u" 1 "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$u'")"
done
check "the proxy carried the allowed request" grep -q "^GET $M/via-proxy.png " "$PROXY_LOG"
check "...and the allowed redirect's next hop" grep -q "^GET $M/redirected-ok.png " "$PROXY_LOG"
check "...and the first hop of the redirect into the private network" grep -q "^GET $M/to-internal.png " "$PROXY_LOG"
for u in "${PROXY_INTERNAL[@]}"; do
    check_eq "refused: $u" "refused_address|t" "$(refused "$u")"
done
check_eq "no internal target reached the proxy" "" "$(internal_seen)"
check_eq "the proxy's password is in no log and no row" "" \
    "$(grep -l 'pw-s3cret' "$TESTS_TMP"/*.log; q "SELECT source_url FROM image_failures WHERE last_error LIKE '%pw-s3cret%'")"

# ---- 3. a bad IMGCACHE_HTTP_PROXY: a clear error that does not show it ------------
IMGCACHE_HTTP_PROXY="socks9://imgcache:pw-s3cret@127.0.0.1:1" "$BIN/imgcache-worker" --drain \
    > "$TESTS_TMP/bad-proxy.out" 2> "$TESTS_TMP/bad-proxy.err" < /dev/null
check_eq "a bad IMGCACHE_HTTP_PROXY stops the worker: bad configuration" 2 "$?"
check "the error names IMGCACHE_HTTP_PROXY" grep -q "IMGCACHE_HTTP_PROXY" "$TESTS_TMP/bad-proxy.err"
check_eq "the error does not show its password" "" "$(grep -h 'pw-s3cret' "$TESTS_TMP"/bad-proxy.*)"
it_done
