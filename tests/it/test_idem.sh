#!/usr/bin/env bash
# test_idem.sh - idempotency keys under concurrency: exactly one task per key whatever the
# timing. 20 rounds of two concurrent 200 MB uploads with one key (as a form field sent before
# the file, and as an Idempotency-Key header): one task each round, the other upload answered
# 409 duplicate_in_progress or 200 with the task, never a second 201. A repeated POST with the
# header is answered before its body is sent; a key whose upload failed can be used again.
. "$(dirname "$0")/lib.sh"

ROUNDS=${TASKMILL_IDEM_ROUNDS:-20}
write_conf "[rest]" "max_upload_bytes = 1073741824"
tm_start_all
tm_stop convert # the tasks stay pending: only the uploads are under test
truncate -s 200M "$FIX/big.mp4"
make_mp4 "$FIX/small.mp4" 1

# post KEY_MODE KEY OUT: one upload of the big file; prints the status into OUT.status.
post() {
    local mode=$1 key=$2 out=$3 args=()
    if [ "$mode" = field ]; then
        args=(-F "idempotency_key=$key")
    else
        args=(-H "Idempotency-Key: $key")
    fi
    curl -s -S -o "$out" -w '%{http_code}' -H 'Expect: 100-continue' \
        -F task_type=convert_video_to_libx265 "${args[@]}" -F "file_data=@$FIX/big.mp4" \
        "$URL/v1/tasks" >"$out.status" 2>"$out.err" || true
}

for mode in field header; do
    for ((i = 0; i < ROUNDS / 2; i++)); do
        key="race-$mode-$i"
        post "$mode" "$key" "$W/a" &
        pa=$!
        post "$mode" "$key" "$W/b" &
        pb=$!
        wait "$pa" "$pb"
        sa=$(cat "$W/a.status") sb=$(cat "$W/b.status")
        api GET '/v1/tasks?limit=1000' >"$W/list"
        check "$mode round $i: the list answers 200 ($STATUS)" test "$STATUS" = 200
        ids=$(jq -r '.tasks[]?.id' "$W/list")
        new=0 ok_other=1
        for side in a b; do
            st=$(cat "$W/$side.status")
            case $st in
            201) new=$((new + 1)) ;;
            200) [ "$(jq -r .id "$W/$side")" != null ] || ok_other=0 ;;
            409) [ "$(jq -r .error.code "$W/$side")" = duplicate_in_progress ] || ok_other=0 ;;
            *) ok_other=0 ;;
            esac
        done
        n=$(grep -c . <<<"$ids" || true)
        check "$mode round $i: one 201 ($sa, $sb), the other 409 or 200, one task" \
            test "$new:$ok_other:$n" = "1:1:1"
        # The 200 names the task the 201 made.
        for side in a b; do
            if [ "$(cat "$W/$side.status")" = 200 ]; then
                other=$([ $side = a ] && echo b || echo a)
                check "$mode round $i: the 200 names the task of the 201" \
                    test "$(jq -r .id "$W/$side")" = "$(jq -r .id "$W/$other")"
            fi
        done
        for id in $ids; do # 200 MB back
            api DELETE "/v1/tasks/$id" >/dev/null
            check "$mode round $i: DELETE $id: 204 ($STATUS)" test "$STATUS" = 204
        done
    done
done

# A repeated POST with the header is answered before its body: curl sends no byte of it.
api POST /v1/tasks -H 'Idempotency-Key: early' -F task_type=convert_video_to_libx265 \
    -F "file_data=@$FIX/small.mp4" >"$W/out"
check "the first POST with the header key: 201 ($STATUS)" test "$STATUS" = 201
first=$(jq -r .id "$W/out")
out=$(curl -s -S -o "$W/early" -w '%{http_code} %{size_upload}' -H 'Expect: 100-continue' \
    -H 'Idempotency-Key: early' -F task_type=convert_video_to_libx265 \
    -F "file_data=@$FIX/big.mp4" "$URL/v1/tasks")
check "a repeated key as a header: 200 before the body ($out)" \
    bash -c "[ '${out% *}' = 200 ] && [ '${out#* }' -lt 1000000 ]"
check "the 200 names the first task" test "$(jq -r .id "$W/early")" = "$first"

# A key whose upload failed (a bad field after the key) is free again.
api POST /v1/tasks -F task_type=convert_video_to_libx265 -F idempotency_key=retry-me \
    -F priority=urgent -F "file_data=@$FIX/small.mp4" >"$W/out"
check "an upload refused after its key (400)" test "$STATUS" = 400
api POST /v1/tasks -F task_type=convert_video_to_libx265 -F idempotency_key=retry-me \
    -F "file_data=@$FIX/small.mp4" >"$W/out"
check "the same key then makes a task (201)" test "$STATUS" = 201
check "no upload is left half-way" test -z "$(find "$ROOT/data/request" -name '.tmp-*')"
check "no key temp file is left" test -z "$(find "$ROOT/data/keys" -name '.tmp*')"
tm_start convert
