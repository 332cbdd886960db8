#!/usr/bin/env bash
# test_dashboard.sh - the dashboard (GET /) driven in Debian's headless Chromium through
# Selenium and chromedriver, against the five real daemons with tokens on. The tasks the page
# must show are made here with curl as the user alice (a clip that fails, a batch, a long clip
# that is converting while the page watches); dashboard.py then drives the page as the admin,
# as bob (who uploads through the form and must see none of alice's tasks) and as alice.
# Screenshots of each view go to $TASKMILL_BUILD/screenshots/.
. "$(dirname "$0")/../it/lib.sh"

PY=/usr/bin/python3 # Debian's, with python3-selenium
for need in /usr/bin/chromium /usr/bin/chromedriver; do
    [ -x "$need" ] || { fail "$need is missing (scripts/deps --test installs it)"; exit 1; }
done
ADMIN=$(openssl rand -hex 32) ALICE=$(openssl rand -hex 32) BOB=$(openssl rand -hex 32)
{
    echo "root admin $(printf %s "$ADMIN" | sha256sum | cut -d' ' -f1)"
    echo "alice user $(printf %s "$ALICE" | sha256sum | cut -d' ' -f1)"
    echo "bob user $(printf %s "$BOB" | sha256sum | cut -d' ' -f1)"
} >"$T/tokens"
chmod 600 "$T/tokens"
# One converter: the long clip holds it while the page watches, the others wait their turn.
write_conf "workers = 1" "[rest]" "tokens_file = $T/tokens"
tm_start_all

make_mp4 "$FIX/long.mp4" 30 640x360
make_mp4 "$FIX/short.mp4" 1
make_mp4 "$FIX/upload.mp4" 1
head -c 200000 /dev/urandom >"$FIX/broken.mp4"

CURL_OPTS=(-H "Authorization: Bearer $ALICE")
failed_id=$(submit "$FIX/broken.mp4") || fail "alice submits a broken clip"
check "alice's broken clip fails" wait_state "$failed_id" failed 60
api POST /v1/batches -H 'Content-Type: application/json' \
    --data-binary '{"context":"nightly","size":2}' >"$W/batch.json"
check "alice makes a batch: 201" test "$STATUS" = 201
batch_id=$(jq -r .id "$W/batch.json")
short_id=$(submit "$FIX/short.mp4" -F "batch=$batch_id") || fail "alice submits a clip in the batch"
check "the clip of the batch is done" wait_state "$short_id" done 60

SHOTS=$TASKMILL_BUILD/screenshots
mkdir -p "$SHOTS"
# dashboard.py submits $FIX/long.mp4 as alice (curl) once the admin's page is open: a browser
# slow to start under load must not miss the whole encode.
if URL=$URL ADMIN=$ADMIN ALICE=$ALICE BOB=$BOB LONG_FILE=$FIX/long.mp4 FAILED_ID=$failed_id \
    BATCH_ID=$batch_id UPLOAD_FILE=$FIX/upload.mp4 SHOTS=$SHOTS \
    "$PY" "$(dirname "$0")/dashboard.py"; then
    ok "dashboard.py: every check passed"
else
    fail "dashboard.py"
fi
for f in admin-running admin-finished admin-phone login user-bob user-alice; do
    check "screenshot $f.png saved" test -s "$SHOTS/$f.png"
done
