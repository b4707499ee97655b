#!/bin/sh
# One HTTP exchange per connection (busybox `nc -ll -e` runs this once per client).
HERE=${0%/*}
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
    reply "200 OK" "{\"object\":\"list\",\"data\":[{\"id\":\"$model\",\"object\":\"model\"}]}" ;;
  "POST /v1/embeddings")
    if answer=$(printf '%s' "$body" | awk -v model="$model" -v dims="${DIMENSIONS:-32}" -f "$HERE/embed.awk"); then
      reply "200 OK" "$answer"
    else
      reply "400 Bad Request" "$answer"
    fi ;;
  *)
    reply "404 Not Found" '{"error":{"message":"not found","type":"invalid_request_error"}}' ;;
esac
