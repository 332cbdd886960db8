#!/usr/bin/env bash
# test_e2e.sh - the whole pipeline with the real daemons: upload with curl, conversion with
# libx265, polling, download (whole and by Range), ffprobe checks, delete, empty folders.
. "$(dirname "$0")/lib.sh"

write_conf
tm_start_all

make_mp4 "$FIX/clip one.mp4" 2
make_mkv_multi "$FIX/multi.mkv"

# The discovery endpoints.
api GET /v1/task-types >"$W/out"
check "task-types lists convert_video_to_libx265 ($STATUS)" \
    test "$STATUS:$(jq -r '.task_types[0].name' "$W/out")" = 200:convert_video_to_libx265
check "task-types shows the crf schema" test "$(jq -r '.task_types[0].parameters.crf.maximum' "$W/out")" = 51
api GET /healthz >/dev/null
check "healthz is 200 with all daemons up" test "$STATUS" = 200

# mp4 in -> mp4 (hvc1) out, audio copied, metadata kept.
id=$(submit "$FIX/clip one.mp4" -F 'params={"crf":30}' -F priority=600)
check "POST gives a task id" test -n "$id"
api GET "/v1/tasks/$id" >"$W/out"
check "GET of the new task: 200 ($STATUS)" test "$STATUS" = 200
check "task object echoes file_name" test "$(jq -r .file_name "$W/out")" = "clip one.mp4"
check "task object echoes file_path" test "$(jq -r .file_path "$W/out")" = "$FIX"
check "task object has the effective params" test "$(jq -c .params "$W/out")" = '{"crf":30,"preset":"ultrafast"}'
check "priority kept" test "$(jq -r .priority "$W/out")" = 600
wait_state "$id" done 120
api GET "/v1/tasks/$id" >"$W/out"
check "GET of the done task: 200 ($STATUS)" test "$STATUS" = 200
check "result named after the input" test "$(jq -r .result.file_name "$W/out")" = "clip one.mp4"
check "progress is 100 when done" test "$(jq -r .progress.percent "$W/out")" = 100
check "finished_at is set" test "$(jq -r .finished_at "$W/out")" != null
sha=$(jq -r .result.sha256 "$W/out")
size=$(jq -r .result.size "$W/out")

hdr=$(curl -s -S -D - -o "$W/result.mp4" "$URL/v1/tasks/$id/result")
check "result download is 200" grep -q '^HTTP/1.1 200' <<<"$hdr"
check "Content-Disposition carries the name" grep -qi 'content-disposition: attachment; filename="clip one.mp4"' <<<"$hdr"
check "Content-Type is video/mp4" grep -qi 'content-type: video/mp4' <<<"$hdr"
check "Content-Length is the size" grep -qi "content-length: $size" <<<"$hdr"
check "sha256 matches the status" test "$(sha256sum "$W/result.mp4" | cut -d' ' -f1)" = "$sha"
probe "$W/result.mp4" >"$W/probe.json"
probe "$FIX/clip one.mp4" >"$W/probe_in.json"
check "video is hevc" test "$(jq -r '.streams[] | select(.codec_type=="video") | .codec_name' "$W/probe.json")" = hevc
check "mp4 video is tagged hvc1" test "$(jq -r '.streams[] | select(.codec_type=="video") | .codec_tag_string' "$W/probe.json")" = hvc1
check "audio copied (aac)" test "$(jq -r '.streams[] | select(.codec_type=="audio") | .codec_name' "$W/probe.json")" = aac
check "same stream count" test "$(jq '.streams | length' "$W/probe.json")" = "$(jq '.streams | length' "$W/probe_in.json")"
check "title metadata kept" test "$(jq -r .format.tags.title "$W/probe.json")" = "taskmill fixture"
# The same encoder settings through the ffmpeg program give (nearly) the same bytes: x265 was
# told the real frame rate, not the container's time base (which made it starve the bitrate).
ffmpeg -v error -y -i "$FIX/clip one.mp4" -map 0 -c:v libx265 -preset ultrafast -crf 30 \
    -x265-params log-level=error -c:a copy "$W/ref.mp4"
check "output size matches the ffmpeg program's within 5% ($size vs $(stat -c %s "$W/ref.mp4"))" \
    python3 -c "import sys; a,b=$size,$(stat -c %s "$W/ref.mp4"); sys.exit(abs(a-b) > 0.05*b)"
din=$(jq -r .format.duration "$W/probe_in.json")
dout=$(jq -r .format.duration "$W/probe.json")
check "duration within 1% ($din vs $dout)" python3 -c "import sys; a,b=float('$din'),float('$dout'); sys.exit(abs(a-b) > max(0.01*a, 0.1))"

# Range requests.
curl -s -S -D "$W/hdr" -o "$W/part" -H 'Range: bytes=10-109' "$URL/v1/tasks/$id/result"
check "Range gives 206" grep -q '^HTTP/1.1 206' "$W/hdr"
check "Range gives Content-Range" grep -qi "content-range: bytes 10-109/$size" "$W/hdr"
check "Range body is the right bytes" cmp -s "$W/part" <(tail -c +11 "$W/result.mp4" | head -c 100)
curl -s -S -D "$W/hdr" -o /dev/null -H "Range: bytes=$size-" "$URL/v1/tasks/$id/result"
check "Range past the end gives 416" grep -q '^HTTP/1.1 416' "$W/hdr"

# mkv in (2 audio + subtitle + chapter) -> mkv out with everything kept.
id2=$(submit "$FIX/multi.mkv")
wait_state "$id2" done 120
api GET "/v1/tasks/$id2/result" >"$W/multi_out.mkv"
check "mkv: result download is 200 ($STATUS)" test "$STATUS" = 200
probe "$W/multi_out.mkv" >"$W/probe.json"
check "mkv: hevc video" test "$(jq -r '[.streams[] | select(.codec_type=="video")][0].codec_name' "$W/probe.json")" = hevc
check "mkv: two audio tracks" test "$(jq '[.streams[] | select(.codec_type=="audio")] | length' "$W/probe.json")" = 2
check "mkv: subtitle kept" test "$(jq '[.streams[] | select(.codec_type=="subtitle")] | length' "$W/probe.json")" = 1
check "mkv: languages kept" test "$(jq -r '[.streams[] | select(.codec_type=="audio") | .tags.language] | join(",")' "$W/probe.json")" = eng,deu
check "mkv: chapter kept" test "$(jq '.chapters | length' "$W/probe.json")" = 1
check "mkv: result name" test "$(jget "/v1/tasks/$id2" .result.file_name)" = multi.mkv

# The admin's view: the job sits in done/ with its files; the input was removed.
check "job is in done/" test -f "$ROOT/data/done/$id/request.json"
check "output is in done/" test -f "$ROOT/data/done/$id/output.mp4"
check "input removed after verification" test ! -e "$ROOT/data/done/$id/input.mp4"

# An idempotency key: the same POST twice gives the same task, 201 then 200.
k1=$(curl -s -S -w '\n%{http_code}' -F idempotency_key=client-a:/v/x.mp4:123 \
    -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/clip one.mp4" "$URL/v1/tasks")
k2=$(curl -s -S -w '\n%{http_code}' -F idempotency_key=client-a:/v/x.mp4:123 \
    -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/clip one.mp4" "$URL/v1/tasks")
kid=$(sed '$d' <<<"$k1" | jq -r .id)
check "first POST with a key is 201" test "$(tail -n 1 <<<"$k1")" = 201
check "repeated key is 200" test "$(tail -n 1 <<<"$k2")" = 200
check "repeated key gives the same task" test "$(sed '$d' <<<"$k2" | jq -r .id)" = "$kid"
api POST /v1/tasks -F idempotency_key="$(printf 'bad key\x01')" -F task_type=convert_video_to_libx265 \
    -F "file_data=@$FIX/clip one.mp4" >"$W/out"
check "a bad key is 400 bad_idempotency_key" test "$STATUS:$(jq -r .error.code "$W/out")" = 400:bad_idempotency_key
wait_state "$kid" done 120
api DELETE "/v1/tasks/$kid" >/dev/null
check "DELETE of the keyed task: 204 ($STATUS)" test "$STATUS" = 204
k3=$(curl -s -S -w '\n%{http_code}' -F idempotency_key=client-a:/v/x.mp4:123 \
    -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/clip one.mp4" "$URL/v1/tasks")
check "a key whose task was deleted makes a new task" test "$(tail -n 1 <<<"$k3")" = 201
kid3=$(sed '$d' <<<"$k3" | jq -r .id)
wait_state "$kid3" done 120
api DELETE "/v1/tasks/$kid3" >/dev/null
check "DELETE of the new keyed task: 204 ($STATUS)" test "$STATUS" = 204

# Listing and status.
# Two tasks are left, oldest first: $id, then $id2.
api GET '/v1/tasks?state=done' >"$W/out"
check "list shows both done tasks, oldest first ($STATUS)" \
    test "$STATUS:$(jq -r '[.tasks[].id] | join(" ")' "$W/out")" = "200:$id $id2"
api GET '/v1/tasks?limit=1' >"$W/out"
cursor=$(jq -r .next_cursor "$W/out")
check "first page of one: the older task and a cursor ($STATUS)" \
    test "$STATUS:$(jq -r '[.tasks[].id] | join(" ")' "$W/out")" = "200:$id" -a "$cursor" != null
api GET "/v1/tasks?limit=1&cursor=$cursor" >"$W/out"
check "second page: the other task and no further cursor ($STATUS)" \
    test "$STATUS:$(jq -r '[.tasks[].id] | join(" ")' "$W/out"):$(jq -r .next_cursor "$W/out")" = "200:$id2:null"
api GET /v1/status >"$W/out"
check "status answers 200 ($STATUS)" test "$STATUS" = 200
check "status counts done" test "$(jq -r .done "$W/out")" = 2
check "status shows max_workers: the converter's one per core and the 4 http slots" test "$(jq -r .max_workers "$W/out")" = $(($(nproc) + 4))

# A camera file with a timecode (data) track: data tracks are not copied (as with the ffmpeg
# program); the mp4 muxer writes a fresh timecode track from the video's timecode tag.
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=sample_rate=48000 \
    -t 2 -c:v libx264 -pix_fmt yuv420p -preset ultrafast -c:a aac -shortest \
    -timecode 01:00:00:00 "$FIX/camera.mov"
check "fixture has a data track" test "$(probe "$FIX/camera.mov" | jq -r '.streams[2].codec_type')" = data
idtc=$(submit "$FIX/camera.mov")
wait_state "$idtc" done 120
api GET "/v1/tasks/$idtc/result" >"$W/camera.mp4"
check "camera file: result download is 200 ($STATUS)" test "$STATUS" = 200
probe "$W/camera.mp4" >"$W/probe.json"
check "camera file: video and audio kept" \
    test "$(jq -r '[.streams[:2][].codec_type] | join(",")' "$W/probe.json")" = video,audio
check "camera file: timecode kept" \
    test "$(jq -r '.streams[0].tags.timecode' "$W/probe.json")" = 01:00:00:00
check "camera file: hevc tagged hvc1" \
    test "$(jq -r '.streams[0] | .codec_name + "/" + .codec_tag_string' "$W/probe.json")" = hevc/hvc1
api DELETE "/v1/tasks/$idtc" >/dev/null
check "DELETE of the camera task: 204 ($STATUS)" test "$STATUS" = 204

# Delete: 204, then 404, and the folders are empty.
api DELETE "/v1/tasks/$id" >/dev/null
check "DELETE is 204" test "$STATUS" = 204
api DELETE "/v1/tasks/$id2" >/dev/null
check "DELETE of the mkv task: 204 ($STATUS)" test "$STATUS" = 204
api GET "/v1/tasks/$id" >/dev/null
check "deleted task is 404" test "$STATUS" = 404

# Deleting a running conversion stops it and removes everything, partial output included.
make_mp4 "$FIX/long.mp4" 10 1280x720
id3=$(submit "$FIX/long.mp4" -F 'params={"preset":"medium"}')
wait_state "$id3" in_progress 30
for _ in $(seq 300); do
    ls "$ROOT/data/in_progress/$id3"/output.*.partial >/dev/null 2>&1 && break
    sleep 0.1
done
check "a partial output exists while converting" ls "$ROOT/data/in_progress/$id3"/output.mp4.partial
api DELETE "/v1/tasks/$id3" >/dev/null
check "DELETE of a running task is 204" test "$STATUS" = 204
api GET "/v1/tasks/$id3" >/dev/null
check "the deleted running task is 404" test "$STATUS" = 404
api GET /healthz >/dev/null
check "converter still serving after the delete" test "$STATUS" = 200

leftover=$(find "$ROOT/data" -mindepth 2 -not -path "$ROOT/data/index*" | head)
check "data/ stage folders are empty ($leftover)" test -z "$leftover"
check "nothing written outside the root" test -z "$(files_outside_root)"
