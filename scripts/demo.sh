#!/usr/bin/env bash
# The headline flow against a running system (start it first with scripts/run-local.sh):
#   1. mint a development token for a new user (`task-api token`, dev secret from dapr.yaml);
#   2. create a task due in 10 minutes, inside the reminder window (REMINDER_LEAD_TIME in dapr.yaml);
#   3. show the two emails it causes (task created, task due soon) from .local/mail;
#   4. complete the task and show its audit trail and the trail's hash-chain verification, read
#      through Dapr service invocation on audit-logger's own sidecar (port 3503): the shipped
#      access control lets no other app invoke it.
# Needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_FILE=${RUN_FILE:-dapr.yaml}
API=http://127.0.0.1:8080
DAPR=http://127.0.0.1:3500
# The audit trail is read through audit-logger's own sidecar: the shipped access control
# (deploy/dapr/configuration.yaml) lets no other app invoke it.
AUDIT_DAPR=http://127.0.0.1:3503
WAIT_SECONDS=${WAIT_SECONDS:-30}

missing=()
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "error: missing ${missing[*]}; install it (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
if [ ! -x target/debug/task-api ]; then
  echo "error: target/debug/task-api not found; start the system with scripts/run-local.sh" >&2
  exit 1
fi

# A value of the run file's env (first occurrence), e.g. `setting JWT_SECRET`.
setting() { sed -n "s/^[[:space:]]*$1:[[:space:]]*//p" "$RUN_FILE" | head -n 1 | tr -d '"'; }
JWT_SECRET=$(setting JWT_SECRET)
ADMIN_TOKEN=$(setting AUDIT_ADMIN_TOKEN)
MAIL_DIR=$(setting MAIL_DIR)
LEAD_TIME=$(setting REMINDER_LEAD_TIME)
for name in JWT_SECRET ADMIN_TOKEN MAIL_DIR; do
  [ -n "${!name}" ] || { echo "error: no ${name/ADMIN_TOKEN/AUDIT_ADMIN_TOKEN} in $RUN_FILE" >&2; exit 1; }
done

if [ "$(curl -s -o /dev/null -w '%{http_code}' "$DAPR/v1.0/healthz")" != 204 ]; then
  echo "error: nothing healthy on $DAPR; start the system first: scripts/run-local.sh" >&2
  exit 1
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# Waits (up to WAIT_SECONDS) until "$@" succeeds.
poll() {
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.5
  done
}

user_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
email="demo-${user_id:0:8}@example.com"
step "Development token for user $user_id <$email>"
token=$(JWT_SECRET=$JWT_SECRET target/debug/task-api token --user-id "$user_id" --email "$email" --ttl 1h)
echo "${token:0:40}…"

due=$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
step "Create a task due at $due (reminder lead time ${LEAD_TIME:-1h}: it is reminded at once)"
created=$(curl -sS --fail-with-body -X POST "$API/api/tasks" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"title\": \"Water the plants\", \"description\": \"The ones on the balcony.\", \"priority\": \"high\", \"due_date\": \"$due\"}")
echo "$created" | python3 -m json.tool
task_id=$(echo "$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

# The emails sent to $email so far, as `subject|file` lines (the recipient is unique to this run).
emails_to() {
  python3 - "$MAIL_DIR" "$email" <<'EOF'
import email, email.policy, pathlib, sys
folder, to = pathlib.Path(sys.argv[1]), sys.argv[2]
for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    if to in str(msg["To"]):
        print(f'{msg["Subject"]}|{path}')
EOF
}
two_emails() { [ "$(emails_to | wc -l)" -ge 2 ]; }

step "Waiting for the task-created and task-due-soon emails in $MAIL_DIR"
if ! poll two_emails; then
  echo "error: expected 2 emails to $email within ${WAIT_SECONDS}s, found:" >&2
  emails_to >&2
  exit 1
fi
emails_to | while IFS='|' read -r subject file; do
  python3 - "$file" <<'EOF'
import email, email.policy, sys
path = sys.argv[1]
msg = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.default)
print(f"\n--- {path}")
print(f"To:      {msg['To']}\nFrom:    {msg['From']}\nSubject: {msg['Subject']}\n")
body = msg.get_body(preferencelist=("plain",))
print(body.get_content().rstrip() if body else "(no text part)")
EOF
done

step "Complete the task"
curl -sS --fail-with-body -X POST "$API/api/tasks/$task_id/complete" \
  -H "Authorization: Bearer $token" | python3 -m json.tool

trail() {
  curl -sS --fail-with-body "$AUDIT_DAPR/v1.0/invoke/audit-logger/method/audit/tasks/$task_id$1" \
    -H "Authorization: Bearer $ADMIN_TOKEN"
}
# created, 2 × notification-sent, due-soon, completed
trail_complete() {
  trail "" | python3 -c 'import json, sys
types = [e["event_type"] for e in json.load(sys.stdin)["entries"]]
sys.exit(0 if len(types) >= 5 and "task-completed" in types else 1)'
}

step "Audit trail of the task (GET /audit/tasks/$task_id through Dapr service invocation)"
poll trail_complete || echo "warning: the trail is not complete after ${WAIT_SECONDS}s" >&2
trail "" | python3 -c '
import json, sys
page = json.load(sys.stdin)
print(page["trail"] + ":")
for e in page["entries"]:
    print("  #{seq:<3} {recorded_at}  {event_type:<18} from {source:<19} hash {h}...".format(h=e["hash"][:12], **e))
'

step "Verification of the trail's hash chain (GET /audit/tasks/$task_id/verify)"
trail /verify | python3 -m json.tool

echo
echo "Done. The emails are in $MAIL_DIR; the task is $API/api/tasks/$task_id (with the token above)."
