#!/bin/sh
# faq-bot: one HTTP exchange per connection (busybox `nc -ll -e` runs this once per client).
# POST /v1/chat/completions: the last message is matched against faq.txt; a good match is
# answered from the FAQ, anything else goes to the chat model, or gets the hand-off message.
# The farm gives the model as MODEL_ENDPOINT (the marketplace's gateway), MODEL_API_KEY and
# MODEL_NAME (the model deployed with it); each model call names the call it serves in
# X-Formarket-Parent, so the gateway meters it as that call's child.
# Settings arrive as SETTING_<KEY> variables (min_match, handoff_message).
MODEL_URL=${MODEL_ENDPOINT:-$FAQ_MODEL_URL}
MIN_MATCH=${SETTING_MIN_MATCH:-${FAQ_MIN_MATCH:-0.34}}
HERE=${0%/*}
CR=$(printf '\r')
read -r method target _version
target=${target%"$CR"}
length=0
call=
while IFS= read -r header; do
  header=${header%"$CR"}
  [ -z "$header" ] && break
  case $header in
    [Cc]ontent-[Ll]ength:*) length=${header#*:}; length=${length# } ;;
    [Xx]-[Ff]ormarket-[Cc]all:*) call=${header#*:}; call=${call# } ;;
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

completion() { # answer text (no double quotes or backslashes)
  reply "200 OK" "{\"id\":\"chatcmpl-faq\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"tinyforge/faq-bot\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"$1\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0}}"
}

case "$method $target" in
  "GET /health")
    reply "200 OK" '{"status":"ok"}' ;;
  "GET /v1/models")
    reply "200 OK" '{"object":"list","data":[{"id":"tinyforge/faq-bot","object":"model","owned_by":"tinyforge"}]}' ;;
  "POST /v1/chat/completions")
    asked=$(printf '%s' "$body" | tr -d '\\\n' \
      | sed -n 's/.*"content"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    if answer=$(awk -v q="$asked" -v min="$MIN_MATCH" -f "$HERE/faq.awk" "$HERE/faq.txt"); then
      completion "$answer"
    elif [ -n "$MODEL_URL" ]; then
      case $call in *[!A-Za-z0-9._:-]*) call= ;; esac
      case $MODEL_NAME in *[!a-z0-9-]*) MODEL_NAME= ;; esac
      set -- --header 'Content-Type: application/json'
      [ -n "$MODEL_API_KEY" ] && set -- "$@" --header "Authorization: Bearer $MODEL_API_KEY"
      [ -n "$call" ] && set -- "$@" --header "X-Formarket-Parent: $call"
      # The request names this agent; the model call names the model deployment instead.
      ask=$(printf '%s' "$body" | tr '\n' ' ')
      [ -n "$MODEL_NAME" ] && ask=$(printf '%s' "$ask" \
        | sed 's/"model"[[:space:]]*:[[:space:]]*"[^"]*"/"model":"'"$MODEL_NAME"'"/')
      if forwarded=$(wget -q -O - "$@" --post-data "$ask" "$MODEL_URL/v1/chat/completions"); then
        reply "200 OK" "$forwarded"
      else
        reply "502 Bad Gateway" '{"error":{"message":"the model did not answer","type":"server_error"}}'
      fi
    else
      handoff=${SETTING_HANDOFF_MESSAGE:-${FAQ_HANDOFF:-I could not find that in our FAQ. A person from our team will get back to you within one working day.}}
      completion "$(printf '%s' "$handoff" | tr -d '"\\')"
    fi ;;
  *)
    reply "404 Not Found" '{"error":{"message":"not found","type":"invalid_request_error"}}' ;;
esac
