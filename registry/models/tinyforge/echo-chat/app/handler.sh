#!/bin/sh
# echo-chat: one HTTP exchange per connection (busybox `nc -ll -e` runs this once per client).
# Reads the request line, the headers and Content-Length bytes of body from stdin; answers on
# stdout. Deterministic on purpose: the same request always gets the same answer.
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

reply() { # status, json
  printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$1" "${#2}" "$2"
}

case "$method $target" in
  "GET /health")
    reply "200 OK" '{"status":"ok"}' ;;
  "GET /v1/models")
    reply "200 OK" '{"object":"list","data":[{"id":"tinyforge/echo-chat","object":"model","owned_by":"tinyforge"}]}' ;;
  "POST /v1/chat/completions")
    # The last "content" string of the request is the last message; JSON escapes are dropped.
    said=$(printf '%s' "$body" | tr -d '\\\n' \
      | sed -n 's/.*"content"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    [ -n "$said" ] || said="(nothing)"
    answer="You said: $said"
    # Token counts are word counts of the messages' contents: a stand-in for a tokenizer.
    prompt_tokens=$(printf '%s' "$body" | tr -d '\\\n' \
      | grep -o '"content"[[:space:]]*:[[:space:]]*"[^"]*"' | sed 's/^"content"[^"]*"//' | wc -w)
    completion_tokens=$(printf '%s' "$answer" | wc -w)
    reply "200 OK" "{\"id\":\"chatcmpl-echo\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"tinyforge/echo-chat\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"$answer\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":$prompt_tokens,\"completion_tokens\":$completion_tokens,\"total_tokens\":$((prompt_tokens + completion_tokens))}}" ;;
  *)
    reply "404 Not Found" '{"error":{"message":"not found","type":"invalid_request_error"}}' ;;
esac
