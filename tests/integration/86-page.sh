#!/usr/bin/env bash
# The demo page (compose/page.sh) in a real browser: headless Chromium opens
# it from nginx (compose/nginx.sh), every <img> loads (naturalWidth > 0), the
# chats without a picture show their initials, a title full of HTML shows as
# text, and a screenshot is saved (page.png in the test's folder). The page
# forbids scripts, so the checks run through the DevTools protocol over
# --remote-debugging-pipe (a small Python client, standard library only).
# Its own database on the test stack's PostgreSQL; no broker, no worker: the
# cached rows and stored files are made here as the worker makes them.
. "$ROOT/tests/integration/lib.sh"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || it_bail "$CHROMIUM is not installed (Debian package chromium; make deps)"
[ -n "${DATABASE_URL:-}" ] || it_bail "no stack: run through tests/run.sh (sh tests/run.sh $IT_NAME)"
: "${STACK_DATABASE_URL:=$DATABASE_URL}"
fresh_database it_86_page "$TESTS_TMP/db.log" || it_bail "cannot create the database" "$TESTS_TMP/db.log"

STORE=$TESTS_TMP/images
PAGE=$TESTS_TMP/page
mkdir -p "$STORE" "$PAGE"
start_nginx "$STORE" /images "$PAGE"
IMGCACHE_PUBLIC_URL=$NGINX_URL/images IMGCACHE_STORAGE_DIR=$STORE \
    "$BIN/imgcache-producer" migrate > "$TESTS_TMP/migrate.log" 2>&1 ||
    it_bail "imgcache-producer migrate failed" "$TESTS_TMP/migrate.log"

# One cached chat per format, one with a contact image (a stored file: the
# contacts system's own server, here), three without a picture.
for ext in jpg png gif webp; do
    sha=$(sha256sum < "$IMG/avatar.$ext" | cut -c1-64)
    mkdir -p "$STORE/${sha:0:2}"
    cp "$IMG/avatar.$ext" "$STORE/${sha:0:2}/$sha.$ext"
    q "INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size)
         VALUES ('$sha', '${sha:0:2}/$sha.$ext', 'image/$ext', $(stat -c %s "$IMG/avatar.$ext"));
       INSERT INTO cached_images (source_url, sha256, content_type, byte_size)
         VALUES ('https://img.test/$ext', '$sha', 'image/$ext', 1);
       INSERT INTO chats (chat_id, title, chat_type, img_source_url)
         VALUES ('c-$ext', 'Cached ${ext^^}', 'group', 'https://img.test/$ext')" > /dev/null
done
CONTACT=$NGINX_URL/images/$(q "SELECT storage_key FROM image_blobs WHERE content_type = 'image/png'")
q "INSERT INTO chats (chat_id, title, chat_type, contact_image_url)
     VALUES ('k', 'Kim Contact', 'single', '$CONTACT');
   INSERT INTO chats (chat_id, title, chat_type, img_source_url)
     VALUES ('n1', 'Nora Initials', 'group', NULL),
            ('n2', '<script>alert(1)</script> & \"Co''s\"', 'group', 'https://img.test/never-cached');
   INSERT INTO chats (chat_id, title, chat_type) VALUES ('n3', NULL, 'group')" > /dev/null
check_eq "the fixture: 4 cached, 1 contact, 3 initials" "cached 4,contact 1,initials 3" \
    "$(q "SELECT string_agg(image_source || ' ' || n, ',' ORDER BY image_source)
          FROM (SELECT image_source, count(*) n FROM chat_avatars GROUP BY 1) s")"

check "compose/page.sh writes the page" sh "$ROOT/compose/page.sh" "$PAGE/index.html"
check "titles are HTML-escaped" grep -qF '&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&#39;s&quot;' "$PAGE/index.html"
check "no script element in the page" bash -c '! grep -qi "<script" "$1"' _ "$PAGE/index.html"

# The browser: prints "images=N loaded=N", one "img SRC WIDTH" per image,
# "initials=N shown=N" and one "chat SOURCE|INITIALS|HAS_IMG|TITLE" per chat.
cat > "$TESTS_TMP/cdp.py" <<'PY'
import base64, json, os, subprocess, sys, time

chromium, url, shot, profile = sys.argv[1:5]
# --remote-debugging-pipe: Chromium reads commands on fd 3 and writes
# answers on fd 4, each a JSON text ended by a NUL byte.
proc = subprocess.Popen(
    ["bash", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', "bash", chromium,
     "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
     "--disable-background-networking", "--disable-component-update", "--disable-sync",
     "--user-data-dir=" + profile, "--remote-debugging-pipe", "--window-size=1000,800", "about:blank"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
buf = b""
next_id = 0

def call(method, params=None, session=None):
    global buf, next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    proc.stdin.write(json.dumps(msg).encode() + b"\0")
    proc.stdin.flush()
    while True:
        while b"\0" not in buf:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                sys.exit("chromium closed the pipe")
            buf += chunk
        raw, buf = buf.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == next_id:
            if "error" in reply:
                sys.exit(f"{method}: {reply['error']}")
            return reply["result"]

def evaluate(session, expr):
    r = call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
    return r["result"].get("value")

try:
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    call("Page.enable", session=session)
    call("Page.navigate", {"url": url}, session)
    deadline = time.time() + 20
    done = "document.readyState === 'complete' && [...document.images].every(i => i.complete)"
    while not evaluate(session, done):
        if time.time() > deadline:
            sys.exit("the page did not finish loading in 20 s")
        time.sleep(0.1)
    imgs = evaluate(session, "[...document.images].map(i => [i.currentSrc, i.naturalWidth])")
    print(f"images={len(imgs)} loaded={sum(1 for _, w in imgs if w > 0)}")
    for src, w in imgs:
        print(f"img {src} {w}")
    chats = evaluate(session, """[...document.querySelectorAll('li.chat')].map(li => {
        const i = li.querySelector('.initials'), r = i.getBoundingClientRect();
        return [li.dataset.source, i.textContent, !!li.querySelector('img'),
                r.width > 0 && r.height > 0 && getComputedStyle(i).visibility === 'visible',
                li.querySelector('.title').textContent];
    })""")
    no_pic = [c for c in chats if not c[2]]
    print(f"initials={len(no_pic)} shown={sum(1 for c in no_pic if c[3] and c[1])}")
    for source, initials, has_img, shown, title in chats:
        print(f"chat {source}|{initials}|{int(has_img)}|{title}")
    call("Emulation.setDeviceMetricsOverride",
         {"width": 1000, "height": 700, "deviceScaleFactor": 1, "mobile": False}, session)
    png = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(png))
    call("Browser.close")
finally:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
PY
PROFILE=$(mktemp -d "$TESTS_TMP/chromium.XXXXXX")
SHOT=$TESTS_TMP/page.png
timeout 60 python3 "$TESTS_TMP/cdp.py" "$CHROMIUM" "$NGINX_URL/" "$SHOT" "$PROFILE" \
    > "$TESTS_TMP/browser.out" 2> "$TESTS_TMP/browser.log"
check "headless Chromium opened the page" test $? -eq 0
sed 's/^/#   /' "$TESTS_TMP/browser.out"
check_eq "every <img> loaded (naturalWidth > 0)" "images=5 loaded=5" "$(grep '^images=' "$TESTS_TMP/browser.out")"
check_eq "the chats without a picture show their initials" "initials=3 shown=3" \
    "$(grep '^initials=' "$TESTS_TMP/browser.out")"
check "a cached WebP is shown from the store" grep -q "^img $NGINX_URL/images/.*\.webp [1-9]" "$TESTS_TMP/browser.out"
check "the contact image is shown" grep -qF "img $CONTACT " "$TESTS_TMP/browser.out"
check "the sources are shown: contact" grep -qxF "chat contact|KC|1|Kim Contact" "$TESTS_TMP/browser.out"
check "initials: NI for Nora Initials" grep -qxF "chat initials|NI|0|Nora Initials" "$TESTS_TMP/browser.out"
check "a title of HTML is text, not markup" \
    grep -qxF "chat initials|SC|0|<script>alert(1)</script> & \"Co's\"" "$TESTS_TMP/browser.out"
check "a screenshot was saved ($SHOT)" bash -c '[ "$(head -c 8 "$1" | od -An -tx1 | tr -d " \n")" = 89504e470d0a1a0a ]' _ "$SHOT"
it_done
