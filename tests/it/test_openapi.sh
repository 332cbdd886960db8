#!/usr/bin/env bash
# test_openapi.sh - docs/openapi.yaml against the code and the real daemons:
#   (a) the document: OpenAPI 3.1.0, every $ref resolves, every schema is a valid JSON Schema
#       (Draft 2020-12), every (method, path) of the route table in src/rest/rest_route.c is an
#       operation and every operation is in the table, each with the table's access (user,
#       admin, node, public) and the refusals that access brings (401, 403, 400 bad_id, 413,
#       429, 503), and the Error schema's codes are exactly those of docs/api.md's error table
#       and of src/rest/*.c;
#   (b) real requests with curl (submit a clip, JSON tasks, a batch, list, get, status,
#       workers, history, check, drain/resume, a failed task and its retry, the result whole
#       and by Range, 206 and 416, the node endpoints, and errors: 400, 401, 403, 404, 405,
#       409, 415, 422) whose status is checked first, then the answer is validated against
#       the document's response for that path, method and status: the body against its schema
#       ($refs resolved in the whole document), its Content-Type against the documented media
#       types, and the documented required headers;
#   (c) GET /v1/openapi.yaml answers the document itself, byte for byte, as application/yaml.
# TASKMILL_OPENAPI=FILE checks another copy of the document in (a) and (b) (e.g. a broken one,
# to see this test fail); (c) always compares with docs/openapi.yaml.
# Needs Debian's python3 with python3-yaml and python3-jsonschema (4.10 has Draft 2020-12).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3 # not a python3 earlier in PATH (pyenv) without the Debian modules
SPEC_SRC=$TASKMILL_SRC/docs/openapi.yaml
SPEC=${TASKMILL_OPENAPI:-$SPEC_SRC}
if ! $PY -c 'import yaml, jsonschema; jsonschema.Draft202012Validator' 2>"$W/py_err"; then
    fail "$PY lacks python3-yaml or python3-jsonschema: $(tail -n 1 "$W/py_err")"
    exit 1
fi

cat >"$W/openapi_check.py" <<'PYEOF'
"""The checks of test_openapi.sh. `static SPEC SRC OUT` checks the document and writes it as
JSON to OUT for the other command; `validate OUT METHOD TEMPLATE PATH STATUS HEADERS BODY`
checks one
real answer. Each problem is printed as a line "FAIL: ..."; other lines are "ok: ..." or
"note: ...".
"""
import glob
import json
import re
import sys

import jsonschema
import yaml
from jsonschema import Draft202012Validator

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ACCESS = {"T": "user", "P": "public", "A": "admin", "N": "node"}


def pointer(doc, ref):
    """The target of a local $ref ("#/a/b"), or KeyError."""
    if not ref.startswith("#"):
        raise KeyError("not a local reference")
    node = doc
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(part)
    return node


def deref(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        obj = pointer(doc, obj["$ref"])
    return obj


def walk(obj, where="#"):
    """Every (where, dict) in obj."""
    if isinstance(obj, dict):
        yield where, obj
        for k, v in obj.items():
            yield from walk(v, where + "/" + str(k).replace("~", "~0").replace("/", "~1"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, "%s/%d" % (where, i))


def schemas_of(doc):
    """(where, schema) of every Schema Object outside components/schemas' own insides: the
    named schemas, and each `schema` of a parameter, header or media type."""
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        yield "#/components/schemas/" + name, s

    def visit(obj, where):
        if isinstance(obj, dict):
            for k, v in obj.items():
                w = where + "/" + k.replace("~", "~0").replace("/", "~1")
                if k == "schema" and isinstance(v, dict):
                    yield w, v  # a schema: not walked into (its own keys are JSON Schema)
                elif w != "#/components/schemas":
                    yield from visit(v, w)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from visit(v, "%s/%d" % (where, i))

    yield from visit(doc, "#")


def error_codes_allowed(doc, response):
    """The error codes a response allows: the enum that narrows the Error schema's code (each
    branch of a oneOf), or every code when it is not narrowed; None when it is no Error."""
    response = deref(doc, response)
    media = response.get("content", {}).get("application/json")
    if not media:
        return None
    every = set(doc["components"]["schemas"]["ErrorCode"]["enum"])

    def of(schema):
        schema = schema or {}
        if schema.get("$ref") == "#/components/schemas/Error":
            return every
        if "oneOf" in schema:
            sets = [of(s) for s in schema["oneOf"]]
            sets = [s for s in sets if s is not None]
            return set().union(*sets) if sets else None
        parts = schema.get("allOf", [])
        if any(p.get("$ref") == "#/components/schemas/Error" for p in parts):
            codes = set(every)
            for p in parts:
                enum = (p.get("properties", {}).get("error", {}).get("properties", {})
                        .get("code", {}).get("enum"))
                if enum is not None:
                    codes &= set(enum)
            return codes
        return None

    return of(media.get("schema"))


def routes_of(src):
    """The route table of rest_route.c: [(METHOD, path template, access)]."""
    text = open(src + "/src/rest/rest_route.c").read()
    m = re.search(r"static const Route routes\[\] = \{(.*?)\n\};", text, re.S)
    if not m:
        return None
    out = []
    for method, prefix, suffix, access in re.findall(
            r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,\s*(NULL|"[^"]*")\s*,\s*\w+\s*,\s*([TPAN])\s*,',
            m.group(1)):
        path = prefix if suffix == "NULL" else prefix + "{id}" + suffix.strip('"')
        out.append((method, path, ACCESS[access]))
    return out


def docs_error_codes(src):
    """The codes in the second column of docs/api.md's "Error codes" table."""
    text = open(src + "/docs/api.md").read().split("## Error codes", 1)[1]
    codes = set()
    for line in text.splitlines():
        if line.strip() and not line.startswith("|"):
            if codes:
                break
            continue
        cells = line.split("|")
        if len(cells) > 3:
            codes |= set(re.findall(r"`([a-z0-9_]+)`", cells[2]))
    return codes


def source_error_codes(src):
    """The error codes rest answers with, from src/rest/*.c."""
    text = "".join(open(f).read() for f in sorted(glob.glob(src + "/src/rest/*.c")))
    codes = set(re.findall(
        r'\b(?:http_error|http_error_close|submit_fail|put_fail|fail)\s*\(\s*[^,()]+,\s*[^,()]+,'
        r'\s*"([a-z0-9_]+)"', text))
    codes |= set(re.findall(r'\[SUBMIT_[A-Z_]+\]\s*=\s*"([a-z0-9_]+)"', text))
    codes |= set(re.findall(r'error_body\("([a-z0-9_]+)"', text))
    return codes


def norm(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


def plain_json(obj, where="#"):
    """The places where the YAML holds what JSON cannot (a date, a number as a key)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                yield "%s: key %r is not a string (quote it)" % (where, k)
            yield from plain_json(v, "%s/%s" % (where, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from plain_json(v, "%s/%d" % (where, i))
    elif not isinstance(obj, (str, int, float, bool, type(None))):
        yield "%s: %r is a YAML %s, not a JSON value (quote it)" % (where, obj, type(obj).__name__)


def static(spec_path, src, out_json):
    fails = []
    fail = fails.append
    try:
        doc = yaml.safe_load(open(spec_path, encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        print("FAIL: %s cannot be loaded: %s" % (spec_path, str(e).replace("\n", " ")))
        return 1
    if not isinstance(doc, dict):
        print("FAIL: %s is not a YAML mapping" % spec_path)
        return 1
    for problem in plain_json(doc):
        fail(problem)
    if doc.get("openapi") != "3.1.0":
        fail("openapi is %r, not '3.1.0'" % doc.get("openapi"))
    for key in ("info", "paths", "components"):
        if key not in doc:
            fail("no %s" % key)

    # Every $ref resolves (in the document: no external references).
    refs = 0
    for where, obj in walk(doc):
        if isinstance(obj.get("$ref"), str):
            refs += 1
            try:
                pointer(doc, obj["$ref"])
            except (KeyError, ValueError, IndexError) as e:
                fail("%s: $ref %s does not resolve (%s)" % (where, obj["$ref"], e))
    print("ok: %d $refs checked" % refs)

    # Every schema is a valid JSON Schema (Draft 2020-12, OpenAPI 3.1's dialect).
    n = 0
    for where, schema in schemas_of(doc):
        n += 1
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            fail("%s is not a valid JSON Schema: %s at %s" % (where, e.message, e.json_path))
    print("ok: %d schemas checked against the Draft 2020-12 metaschema" % n)

    # Operations: a description for every response, path parameters declared, unique ids.
    ops = {}
    ids = set()
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            name = "%s %s" % (method.upper(), path)
            ops[(method.upper(), norm(path))] = (name, op)
            if op.get("operationId") in ids:
                fail("%s: operationId %s is used twice" % (name, op.get("operationId")))
            ids.add(op.get("operationId"))
            if not op.get("responses"):
                fail("%s: no responses" % name)
            for status, r in op.get("responses", {}).items():
                if not re.fullmatch(r"[1-5]([0-9]{2}|XX)|default", str(status)):
                    fail("%s: response key %r is not a status" % (name, status))
                if "description" not in deref(doc, r):
                    fail("%s %s: no description" % (name, status))
            params = [deref(doc, p) for p in item.get("parameters", []) + op.get("parameters", [])]
            declared = {p["name"] for p in params if p.get("in") == "path"}
            for p in re.findall(r"\{([^}]*)\}", path):
                if p not in declared:
                    fail("%s: path parameter {%s} is not declared" % (name, p))
    print("ok: %d operations" % len(ops))

    # The route table and the document: the same (method, path) pairs, the same access.
    routes = routes_of(src)
    if not routes:
        fail("no route table found in src/rest/rest_route.c")
        routes = []
    table = {(m, norm(p)): (p, a) for m, p, a in routes}
    for key, (path, access) in table.items():
        if key not in ops:
            fail("route %s %s (rest_route.c) is not in the document" % (key[0], path))
    for key, (name, op) in ops.items():
        if key not in table:
            fail("%s is in the document but not in rest_route.c's route table" % name)
            continue
        access = table[key][1]
        if op.get("x-taskmill-access") != access:
            fail("%s: x-taskmill-access is %r, the route table says %s"
                 % (name, op.get("x-taskmill-access"), access))
        public = op.get("security", doc.get("security")) == []
        if public != (access == "public"):
            fail("%s: security %s, but the route is %s"
                 % (name, "none" if public else "bearer", access))
        # What the route's access and shape bring (rest_route.c's request_begins).
        want = {"429": {"too_many_connections"}, "503": {"server_busy"}}
        if access != "public":
            want["401"] = {"unauthorized"}
        want["403"] = {"user": {"node_token"}, "admin": {"admin_only"},
                       "node": {"node_only"}}.get(access, set())
        if "{" in key[1]:
            want["400"] = {"bad_id"}
        for status, codes in want.items():
            if not codes:
                continue
            r = op.get("responses", {}).get(status)
            got = error_codes_allowed(doc, r) if r else None
            if got is None or not codes <= got:
                fail("%s: response %s should allow %s" % (name, status, ", ".join(sorted(codes))))
        if "413" not in op.get("responses", {}):
            fail("%s: no 413 (a body too large for it)" % name)
    print("ok: %d routes in rest_route.c" % len(routes))

    # The error codes: docs/api.md's table and what src/rest answers, no more, no less.
    enum = set(doc["components"]["schemas"].get("ErrorCode", {}).get("enum", []))
    docs = docs_error_codes(src)
    code = source_error_codes(src)
    for c in sorted(docs - enum):
        fail("error code %s (docs/api.md) is not in the ErrorCode enum" % c)
    for c in sorted(code - enum):
        fail("error code %s (src/rest) is not in the ErrorCode enum" % c)
    for c in sorted(enum - docs - code):
        fail("ErrorCode %s is neither in docs/api.md's table nor in src/rest" % c)
    for c in sorted(code - docs):
        print("note: error code %s is answered by src/rest but missing in docs/api.md's table" % c)
    print("ok: %d error codes (%d in docs/api.md, %d in src/rest)" % (len(enum), len(docs), len(code)))
    # Each response narrows the codes to real ones.
    for where, obj in walk(doc):
        for part in obj.get("allOf", []) if isinstance(obj.get("allOf"), list) else []:
            e = (part.get("properties", {}).get("error", {}).get("properties", {})
                 .get("code", {}).get("enum")) if isinstance(part, dict) else None
            for c in e or []:
                if c not in enum:
                    fail("%s: error code %s is not in the ErrorCode enum" % (where, c))

    for f in fails:
        print("FAIL: " + f)
    json.dump(doc, open(out_json, "w"), default=str)
    return 1 if fails else 0


def headers_of(path):
    """The last header block curl -D wrote (after any 100 Continue): {lower name: value}."""
    blocks = re.split(r"\r?\n\r?\n", open(path, encoding="latin-1").read().strip())
    out = {}
    for line in blocks[-1].splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


def validate(spec_json, method, template, path, status, hdr_path, body_path):
    doc = json.load(open(spec_json))
    name = "%s %s -> %s" % (method, template, status)
    if template.startswith("@"):
        name = "%s %s (%s) -> %s" % (method, path, template, status)  # a response of components, for paths the API does not have
        response = doc["components"]["responses"].get(template[1:])
        if response is None:
            print("FAIL: %s: no components/responses/%s" % (name, template[1:]))
            return 1
    else:
        op = doc.get("paths", {}).get(template, {}).get(method.lower())
        if op is None:
            print("FAIL: %s: the document has no %s %s" % (name, method, template))
            return 1
        responses = op.get("responses", {})
        response = responses.get(status) or responses.get(status[0] + "XX") or responses.get("default")
        if response is None:
            print("FAIL: %s: status %s is not documented for %s %s (it has %s)"
                  % (name, status, method, template, ", ".join(sorted(responses))))
            return 1
    try:
        response = deref(doc, response)
    except KeyError as e:
        print("FAIL: %s: unresolved $ref %s" % (name, e))
        return 1
    hdrs = headers_of(hdr_path)
    body = open(body_path, "rb").read()
    fails = []
    resolver = jsonschema.RefResolver.from_schema(doc)

    def check(schema, value, what):
        v = Draft202012Validator(schema, resolver=resolver, format_checker=jsonschema.FormatChecker())
        errs = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
        for e in errs[:5]:
            fails.append("%s: %s: %s: %s" % (name, what, e.json_path, e.message[:300]))
            for sub in sorted(e.context, key=lambda s: list(s.absolute_path))[:4]:
                fails.append("%s:   (%s: %s)" % (name, sub.json_path, sub.message[:200]))

    for hname, h in response.get("headers", {}).items():
        h = deref(doc, h)
        value = hdrs.get(hname.lower())
        if value is None:
            if h.get("required"):
                fails.append("%s: no %s header" % (name, hname))
            continue
        schema = h.get("schema", {})
        if schema.get("type") == "integer":
            try:
                value = int(value)
            except ValueError:
                pass
        check(schema, value, "header " + hname)

    content = response.get("content")
    ctype = hdrs.get("content-type", "")
    media = ctype.split(";")[0].strip().lower()
    if not content:
        if body:
            fails.append("%s: a body of %d bytes (%s) where the document has none"
                         % (name, len(body), ctype or "no Content-Type"))
    else:
        key = next((k for k in content if k.lower() == media), None)
        key = key or next((k for k in content
                           if k.endswith("/*") and media.startswith(k[:-1])), None)
        key = key or ("*/*" if "*/*" in content else None)
        if key is None:
            fails.append("%s: Content-Type %r is not documented (%s)"
                         % (name, ctype, ", ".join(content)))
        elif key == "application/json" or key.endswith("+json"):
            try:
                value = json.loads(body)
            except ValueError as e:
                fails.append("%s: the body is not JSON: %s: %r" % (name, e, body[:200]))
            else:
                check(content[key].get("schema", {}), value, "body")
    for f in fails:
        print("FAIL: " + f)
    if not fails:
        print("ok: %s matches the document (%s, %d bytes)" % (name, ctype or "no body", len(body)))
    return 1 if fails else 0


if __name__ == "__main__":
    if sys.argv[1] == "static":
        sys.exit(static(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit(validate(*sys.argv[2:9]))
PYEOF

# py ARGS...: runs the checker; its FAIL lines count as failures, the others are shown. A
# checker that ends in error without saying why (a traceback) is a failure too.
py() {
    local line rc=0 failed=0
    $PY "$W/openapi_check.py" "$@" >"$W/py_out" 2>&1 || rc=$?
    while IFS= read -r line; do
        case $line in
        FAIL:*) fail "${line#FAIL: }"; failed=1 ;;
        *) echo "$line" ;;
        esac
    done <"$W/py_out"
    if [ $rc -ne 0 ] && [ $failed -eq 0 ]; then
        fail "the checker ($*) exited $rc: $(tail -n 1 "$W/py_out")"
    fi
}

# --- (a) the document ---------------------------------------------------------------------------
echo "== the document: $SPEC"
py static "$SPEC" "$TASKMILL_SRC" "$W/spec.json"
[ -s "$W/spec.json" ] || { fail "the document could not be loaded"; exit 1; }

# --- (b) real answers against the document ------------------------------------------------------
tok() { openssl rand -hex 32; }
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
USER_TOKEN=$(tok) ADMIN_TOKEN=$(tok) NODE_TOKEN=$(tok)
printf 'alice user %s\nroot admin %s\nnode1 node %s\n' "$(hash "$USER_TOKEN")" \
    "$(hash "$ADMIN_TOKEN")" "$(hash "$NODE_TOKEN")" >"$T/tokens"
chmod 600 "$T/tokens"
write_conf "[convert]" "workers = 1" "[rest]" "tokens_file = $T/tokens" \
    "[type.echo]" "kind = exec" "description = prints a word" "command = /usr/bin/printf %s {word}" \
    "input = none" "param.word = string:100" "param.times = int:1..3 default 1" \
    "[type.broken]" "kind = exec" "command = /bin/sh -c 'echo on fire >&2; exit 3'" \
    "input = none" "max_attempts = 1" \
    "[type.flaky]" "kind = exec" "command = /bin/sh -c 'echo busy >&2; exit 75'" "input = none" \
    "retry_exit_codes = 75" "max_attempts = 2" \
    "[type.nap]" "kind = exec" "command = /bin/sleep {seconds}" "input = none" \
    "param.seconds = int:1..30" "[queue]" "retry_backoff = 60"
tm_start_all
make_mp4 "$FIX/clip.mp4" 1
USER=(-H "Authorization: Bearer $USER_TOKEN")
ADMIN=(-H "Authorization: Bearer $ADMIN_TOKEN")
NODE=(-H "Authorization: Bearer $NODE_TOKEN")
JSON=(-H 'Content-Type: application/json')

# call WANT METHOD TEMPLATE PATH [curl args...]: one request; the status must be WANT (checked
# first: another status fails with the body and validates nothing), then the answer is
# validated against the document's response of TEMPLATE (a path of the document, or
# @NAME for components/responses/NAME). The body stays in $W/body, the headers in $W/hdr.
call() {
    local want=$1 method=$2 tmpl=$3 path=$4
    shift 4
    : >"$W/hdr"
    api "$method" "$path" -D "$W/hdr" "$@" >"$W/body"
    if [ "$STATUS" != "$want" ]; then
        fail "$method $path: status $STATUS, not $want: $(head -c 300 "$W/body" | tr '\n' ' ')"
        return 0
    fi
    py validate "$W/spec.json" "$method" "$tmpl" "$path" "$STATUS" "$W/hdr" "$W/body"
}
# field NAME: a member of the last JSON body.
field() { jq -r "$1" "$W/body"; }

echo "== tokens"
call 401 GET /v1/tasks /v1/tasks
call 401 POST /v1/tasks /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/clip.mp4"
call 403 GET /v1/workers /v1/workers "${USER[@]}"
call 403 GET /v1/tasks /v1/tasks "${NODE[@]}"
call 403 GET /v1/node /v1/node "${USER[@]}"
call 200 GET /healthz /healthz

echo "== tasks"
call 200 GET /v1/task-types /v1/task-types "${USER[@]}"
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" -H 'Idempotency-Key: openapi-1' \
    -F task_type=convert_video_to_libx265 -F file_path=/videos -F context=openapi \
    -F priority=high -F callback_url=http://127.0.0.1:9/hook -F 'params={"crf":30}' \
    -F "file_data=@$FIX/clip.mp4"
clip=$(field .id)
check "the clip's Location names it" grep -qi "^location: /v1/tasks/$clip" "$W/hdr"
call 200 POST /v1/tasks /v1/tasks "${USER[@]}" -H 'Idempotency-Key: openapi-1' \
    -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/clip.mp4"
check "the repeated key answers the same task" test "$(field .id)" = "$clip"
call 200 GET '/v1/tasks/{id}' "/v1/tasks/$clip" "${USER[@]}"
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" \
    -d '{"task_type":"echo","params":{"word":"hello"},"priority":300,"timeout":"60","context":null}'
echo_id=$(field .id)
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"broken"}'
broken=$(field .id)
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" \
    -d '{"task_type":"echo","params":{"word":"later"},"delay_seconds":600}'
later=$(field .id)
check "a delayed task is scheduled" test "$(field .state)" = scheduled

echo "== batches"
call 201 POST /v1/batches /v1/batches "${USER[@]}" "${JSON[@]}" \
    -d '{"context":"openapi","size":3,"callback_url":"http://127.0.0.1:9/batch"}'
batch=$(field .id)
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" \
    -d "{\"task_type\":\"echo\",\"params\":{\"word\":\"b\"},\"batch\":\"$batch\"}"
call 200 POST '/v1/batches/{id}/close' "/v1/batches/$batch/close" "${USER[@]}"
check "the closed batch is sealed" test "$(field .sealed)" = true
call 200 GET '/v1/batches/{id}' "/v1/batches/$batch" "${USER[@]}"
call 409 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" \
    -d "{\"task_type\":\"echo\",\"params\":{\"word\":\"c\"},\"batch\":\"$batch\"}"

echo "== finished tasks"
CURL_OPTS=("${USER[@]}")
check "the clip is done" wait_state "$clip" "done" 120
check "the echo task is done" wait_state "$echo_id" "done" 60
check "the broken task failed" wait_state "$broken" failed 60
CURL_OPTS=()
call 200 GET '/v1/tasks/{id}' "/v1/tasks/$clip" "${USER[@]}"
size=$(field .result.size) sha=$(field .result.sha256)
call 200 GET '/v1/tasks/{id}' "/v1/tasks/$echo_id" "${USER[@]}"
call 200 GET '/v1/tasks/{id}' "/v1/tasks/$broken" "${USER[@]}"
check "the failed task says why" test "$(field .error.code)" = exit_status

echo "== results"
call 200 GET '/v1/tasks/{id}/result' "/v1/tasks/$clip/result" "${USER[@]}"
cp "$W/body" "$W/result"
check "the result is the file result.sha256 names" test "$(sha256sum <"$W/result" | cut -d' ' -f1)" = "$sha"
call 206 GET '/v1/tasks/{id}/result' "/v1/tasks/$clip/result" "${USER[@]}" -H 'Range: bytes=10-109'
check "the range is bytes 10-109 of the file" cmp -s "$W/body" <(tail -c +11 "$W/result" | head -c 100)
call 206 GET '/v1/tasks/{id}/result' "/v1/tasks/$clip/result" "${USER[@]}" -H 'Range: bytes=-7'
check "the suffix range is the last 7 bytes" cmp -s "$W/body" <(tail -c 7 "$W/result")
call 416 GET '/v1/tasks/{id}/result' "/v1/tasks/$clip/result" "${USER[@]}" -H "Range: bytes=$size-"
check "416 says the size" grep -qi "^content-range: bytes \*/$size" "$W/hdr"
call 200 GET '/v1/tasks/{id}/result' "/v1/tasks/$echo_id/result" "${USER[@]}"
check "the echo task's result is its stdout" test "$(cat "$W/body")" = hello
call 409 GET '/v1/tasks/{id}/result' "/v1/tasks/$later/result" "${USER[@]}"

echo "== retry"
call 200 POST '/v1/tasks/{id}/retry' "/v1/tasks/$broken/retry" "${USER[@]}"
call 409 POST '/v1/tasks/{id}/retry' "/v1/tasks/$echo_id/retry" "${USER[@]}"

echo "== lists"
call 200 GET /v1/tasks /v1/tasks "${USER[@]}"
call 200 GET /v1/tasks '/v1/tasks?limit=1' "${USER[@]}"
cursor=$(field .next_cursor)
check "a page of one has a next cursor" test "$cursor" != null
call 200 GET /v1/tasks "/v1/tasks?limit=2&cursor=$cursor" "${USER[@]}"
call 200 GET /v1/tasks '/v1/tasks?state=done&context=openapi' "${USER[@]}"
call 200 GET /v1/tasks "/v1/tasks?batch=$batch&state=scheduled" "${USER[@]}"
call 400 GET /v1/tasks '/v1/tasks?state=sleeping' "${USER[@]}"
call 400 GET /v1/tasks '/v1/tasks?limit=0' "${USER[@]}"
call 400 GET /v1/tasks '/v1/tasks?cursor=nope' "${USER[@]}"
call 200 GET /v1/tasks '/v1/tasks?order=newest&limit=2' "${USER[@]}"
newest=$(field '.tasks[0].created_at')
check "order=newest starts from the newest task" \
    test "$(api GET '/v1/tasks?limit=1000' "${USER[@]}" | jq -r '[.tasks[].created_at] | max')" = "$newest"
call 200 GET /v1/tasks "/v1/tasks?order=newest&limit=2&cursor=$(field .next_cursor)" "${USER[@]}"
call 400 GET /v1/tasks '/v1/tasks?order=sideways' "${USER[@]}"
call 200 GET /v1/batches /v1/batches "${USER[@]}"
check "the batch list holds the batch" test "$(field '.batches[0].id')" = "$batch"
call 400 GET /v1/batches '/v1/batches?limit=0' "${USER[@]}"

echo "== a transient failure, waiting for its next attempt"
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"flaky"}'
flaky=$(field .id)
flaky_waits() { # the task is back, scheduled after its first attempt
    api GET "/v1/tasks/$flaky" "${USER[@]}" | jq -e '.attempts == 1 and .state == "scheduled"' >/dev/null
}
check "the flaky task waits for its second attempt" wait_for 30 flaky_waits
call 200 GET '/v1/tasks/{id}' "/v1/tasks/$flaky" "${USER[@]}"
check "  with its last error and its next attempt" \
    test "$(jq -r '.last_error.code + " " + (.next_attempt_at | type)' "$W/body")" = "exit_status string"

echo "== status and the admin's endpoints, a task running"
call 201 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"nap","params":{"seconds":30}}'
nap=$(field .id)
CURL_OPTS=("${USER[@]}")
check "the nap task runs" wait_state "$nap" in_progress 30
CURL_OPTS=()
call 200 GET '/v1/tasks/{id}' "/v1/tasks/$nap" "${USER[@]}"
call 200 GET /v1/status /v1/status "${USER[@]}"
call 200 GET /v1/workers /v1/workers "${ADMIN[@]}"
check "a worker is busy with it" \
    test "$(jq -r --arg id "$nap" '[.workers[] | select(.task_id == $id) | .state] | join(",")' "$W/body")" = busy
call 204 DELETE '/v1/tasks/{id}' "/v1/tasks/$nap" "${USER[@]}"
call 200 GET /v1/workers/history '/v1/workers/history?limit=5' "${ADMIN[@]}"
check "the history holds the attempts" test "$(jq '.attempts | length' "$W/body")" -ge 3
call 400 GET /v1/workers/history '/v1/workers/history?limit=5000' "${ADMIN[@]}"
call 200 GET /v1/workers/throughput /v1/workers/throughput "${ADMIN[@]}"
check "the throughput counts the attempts of the last hour" \
    test "$(jq '[.minutes[] | .done + .failed + .retry + .crashed] | add' "$W/body")" -ge 3
call 403 GET /v1/workers/throughput /v1/workers/throughput "${USER[@]}"
call 200 GET /v1/admin/check /v1/admin/check "${ADMIN[@]}"
call 200 POST /v1/admin/drain /v1/admin/drain "${ADMIN[@]}"
check "drain: draining" test "$(field .draining)" = true
call 200 GET /v1/status /v1/status "${USER[@]}"
call 200 GET /v1/workers /v1/workers "${ADMIN[@]}"
call 200 POST /v1/admin/resume /v1/admin/resume "${ADMIN[@]}"
check "resume: not draining" test "$(field .draining)" = false
call 403 POST /v1/admin/drain /v1/admin/drain "${NODE[@]}"
call 200 GET /metrics /metrics "${ADMIN[@]}"
check "the metrics are Prometheus text" grep -q '^taskmill_tasks_submitted_total{type="echo"}' "$W/body"

echo "== the node's endpoints"
call 200 GET /v1/node /v1/node "${NODE[@]}"
check "the node token is node1" test "$(field .name)" = node1
call 404 GET '/v1/node/tasks/{id}/input' "/v1/node/tasks/$clip/input" "${NODE[@]}"
printf 'result' >"$W/out.bin"
call 400 PUT '/v1/node/tasks/{id}/output' "/v1/node/tasks/$clip/output" "${NODE[@]}" \
    -H "X-Taskmill-Sha256: $(sha256sum <"$W/out.bin" | cut -d' ' -f1)" --data-binary "@$W/out.bin"
call 404 PUT '/v1/node/tasks/{id}/output' "/v1/node/tasks/$clip/output?delivery=1" "${NODE[@]}" \
    -H "X-Taskmill-Sha256: $(sha256sum <"$W/out.bin" | cut -d' ' -f1)" --data-binary "@$W/out.bin"

echo "== errors"
call 404 GET '/v1/tasks/{id}' /v1/tasks/00000000-0000-4000-8000-000000000000 "${USER[@]}"
call 404 GET '/v1/batches/{id}' /v1/batches/00000000-0000-4000-8000-000000000000 "${USER[@]}"
call 400 GET '/v1/tasks/{id}' /v1/tasks/NOT-AN-ID "${USER[@]}"
call 404 GET @NoSuchEndpoint /v1/nothing "${USER[@]}"
call 405 DELETE @MethodNotAllowed /v1/status "${USER[@]}"
call 400 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"echo","priority":"urgent"}'
call 400 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"echo","file_name":"x"}'
call 400 POST /v1/tasks /v1/tasks "${USER[@]}" -F task_type=convert_video_to_libx265
call 422 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"nonesuch"}'
call 422 POST /v1/tasks /v1/tasks "${USER[@]}" "${JSON[@]}" -d '{"task_type":"echo","params":{"word":"x","times":9}}'
call 415 POST /v1/tasks /v1/tasks "${USER[@]}" -H 'Content-Type: text/plain' -d 'hello'
call 400 POST /v1/batches /v1/batches "${USER[@]}" "${JSON[@]}" -d '{"size":0}'

echo "== delete"
call 204 DELETE '/v1/tasks/{id}' "/v1/tasks/$echo_id" "${USER[@]}"
call 404 DELETE '/v1/tasks/{id}' "/v1/tasks/$echo_id" "${USER[@]}"

# --- (c) the document, served -------------------------------------------------------------------
echo "== the dashboard's files, without a token"
call 200 GET / /
call 200 GET /ui/app.js /ui/app.js
call 200 GET /ui/style.css /ui/style.css
check "the page forbids inline scripts (Content-Security-Policy)" \
    grep -qi "^content-security-policy: .*script-src 'self';" "$W/hdr"

echo "== GET /v1/openapi.yaml"
call 200 GET /v1/openapi.yaml /v1/openapi.yaml "${USER[@]}"
if [ "$STATUS" = 200 ]; then
    ct=$(hdr_value "$W/hdr" content-type)
    check "GET /v1/openapi.yaml is application/yaml (Content-Type: $ct)" \
        test "${ct%%;*}" = application/yaml
    check "GET /v1/openapi.yaml is docs/openapi.yaml, byte for byte" cmp "$W/body" "$SPEC_SRC"
fi
