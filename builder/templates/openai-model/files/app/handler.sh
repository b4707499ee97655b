#!/bin/sh
# One HTTP exchange per connection (busybox `nc -ll -e` runs this once per client): read the
# request line, the headers and Content-Length bytes of body; answer on stdout.
CR=$(printf '\r')
read -r method target _version
target=${target%"$CR"}
length=0
while IFS= read -r header; do
  header=${header%"$CR"}
  [ -z "$header" ] && break
  case $header in
    [Cc]ontent-[Ll]ength:*) length=${header#*:}; length=${length# } ;;
  esac
done
body=
if [ "$length" -gt 0 ] 2>/dev/null; then
  body=$(head -c "$length")
fi
model=${MODEL_ID:-{{id}}}

reply() { # status, json
  printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$1" "${#2}" "$2"
}

case "$method $target" in
  "GET /health")
    reply "200 OK" '{"status":"ok"}' ;;
  "GET /v1/models")
    # The deployment's settings (the listing's settings_schema) arrive as SETTING_* variables.
    reply "200 OK" "{\"object\":\"list\",\"data\":[{\"id\":\"$model\",\"object\":\"model\",\"max_model_len\":${SETTING_CONTEXT_LENGTH:-4096}}]}" ;;
  "POST /v1/chat/completions")
    # The echo model: the last "content" string of the request, JSON escapes dropped.
    said=$(printf '%s' "$body" | tr -d '\\\n' \
      | sed -n 's/.*"content"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    [ -n "$said" ] || said="(nothing)"
    answer="You said: $said"
    # Word counts stand in for a tokenizer's counts.
    prompt=$(printf '%s' "$said" | wc -w)
    completion=$(printf '%s' "$answer" | wc -w)
    reply "200 OK" "{\"id\":\"chatcmpl-echo\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"$model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"$answer\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":$prompt,\"completion_tokens\":$completion,\"total_tokens\":$((prompt + completion))}}" ;;
  *)
    reply "404 Not Found" '{"error":{"message":"not found","type":"invalid_request_error"}}' ;;
esac
