# The S3 tests' bucket (90-s3, 91-s3-gc): source after it_setup. Starts
# s3proxy (compose/s3proxy.sh, SigV4 on) under $TESTS_TMP/s3 (S3DIR), stops
# it at exit, exports its AWS_* settings, S3_BUCKET, S3_PORT and
# IMGCACHE_STORAGE_URL=s3://$S3_BUCKET/avatars, and runs migrate so the
# views point at the bucket. s3cli: Debian's awscli on it.

S3DIR=$TESTS_TMP/s3
AWS=/usr/bin/aws
[ -x "$AWS" ] || it_bail "$AWS (Debian's awscli) is not installed (make deps)"
s3_cleanup() {
    local rc=$?
    sh "$ROOT/compose/s3proxy.sh" stop "$S3DIR" > /dev/null 2>&1
    (exit $rc)
    _it_cleanup
}
exit_trap s3_cleanup
s3_start() {
    sh "$ROOT/compose/s3proxy.sh" start "$S3DIR" > "$TESTS_TMP/s3.env" 2>> "$TESTS_TMP/s3.log"
}
s3_start || it_bail "s3proxy did not start" "$TESTS_TMP/s3.log"
set -a
. "$TESTS_TMP/s3.env"
set +a
S3_PORT=${AWS_ENDPOINT_URL##*:}
export IMGCACHE_STORAGE_URL=s3://$S3_BUCKET/avatars
# the views' base: migrate writes the bucket's URL when none is set
export IMGCACHE_PUBLIC_URL=
q "UPDATE settings SET public_base_url = ''"
"$BIN/imgcache-producer" migrate > "$TESTS_TMP/migrate-s3.log" 2>&1 || it_bail "migrate on s3:// failed" "$TESTS_TMP/migrate-s3.log"
# with the secret s3proxy has now (90-s3 rotates it)
s3cli() {
    local key secret
    read -r key secret < "$S3DIR/credentials"
    AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=$AWS_REGION \
        AWS_EC2_METADATA_DISABLED=true "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" "$@"
}

# Every disagreement of the bucket and the rows, one line each: a row
# without its object, an object whose bytes do not hash to its key, an
# object no row points at (unless $1 is orphans-ok: an upload acknowledged
# to a worker killed before its commit leaves one, for gc).
s3_problems() {
    local dl=$TESTS_TMP/bucket sha key got orphans=${1:-}
    rm -rf "$dl"
    s3cli s3 cp --recursive --quiet "s3://$S3_BUCKET/avatars" "$dl" || { echo "aws s3 cp failed"; return 0; }
    while IFS='|' read -r sha key; do
        [ -n "$sha" ] || continue
        if [ ! -f "$dl/$key" ]; then
            echo "row without its object: $key"
            continue
        fi
        got=$(sha256sum "$dl/$key" | cut -d' ' -f1)
        [ "$got" = "$sha" ] || echo "$key hashes to $got, row says $sha"
    done < <(q "SELECT sha256, storage_key FROM image_blobs UNION SELECT sha256, storage_key FROM image_renditions")
    q "SELECT storage_key FROM image_blobs UNION SELECT storage_key FROM image_renditions" | sort > "$TESTS_TMP/.keys"
    (cd "$dl" 2>/dev/null && find . -type f | sed 's|^\./||' | sort) > "$TESTS_TMP/.objects"
    [ "$orphans" = orphans-ok ] ||
        comm -13 "$TESTS_TMP/.keys" "$TESTS_TMP/.objects" | sed 's/^/object no row points at: /'
    return 0
}
