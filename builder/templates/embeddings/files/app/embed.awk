# Hashed character-trigram embeddings in POSIX awk. Input: the JSON body of POST /v1/embeddings
# ("input" is a string or an array of strings). Output: the OpenAI-style JSON answer.

function unquote(s, p,    out, c) {  # the JSON string opening at s[p]; sets NEXT past it
  out = ""; p++
  while (p <= length(s)) {
    c = substr(s, p, 1)
    if (c == "\"") { NEXT = p + 1; return out }
    if (c == "\\") { p++; c = substr(s, p, 1); if (c == "u") { c = " "; p += 4 } else if (c == "n") c = " " }
    out = out c; p++
  }
  NEXT = p; return out
}

function skip(s, p) { while (p <= length(s) && index(" \t\r\n,", substr(s, p, 1))) p++; return p }

function sqrt_(x,    r, i) { if (x <= 0) return 0; r = x; for (i = 0; i < 30; i++) r = (r + x / r) / 2; return r }

function embed(text, v,    t, i, j, h, d, n) {
  for (d = 0; d < dims; d++) v[d] = 0
  t = " " tolower(text) " "
  for (i = 1; i + 2 <= length(t); i++) {
    h = 5381
    for (j = 0; j < 3; j++) h = (h * 33 + CODE[substr(t, i + j, 1)]) % 16777213
    v[h % dims] += (int(h / dims) % 2) ? 1 : -1
  }
  n = 0; for (d = 0; d < dims; d++) n += v[d] * v[d]
  n = (n > 0) ? sqrt_(n) : 1
  for (d = 0; d < dims; d++) v[d] = v[d] / n
}

BEGIN { for (i = 1; i < 256; i++) CODE[sprintf("%c", i)] = i }
{ body = body $0 " " }
END {
  count = 0; p = index(body, "\"input\"")
  if (p > 0) {
    p += 7; p = skip(body, index(substr(body, p), ":") + p)
    if (substr(body, p, 1) == "\"") texts[count++] = unquote(body, p)
    else if (substr(body, p, 1) == "[") {
      p = skip(body, p + 1)
      while (substr(body, p, 1) == "\"") { texts[count++] = unquote(body, p); p = skip(body, NEXT) }
    }
  }
  if (count == 0) {
    print "{\"error\":{\"message\":\"input must be a string or an array of strings\",\"type\":\"invalid_request_error\"}}"
    exit 1
  }
  out = "{\"object\":\"list\",\"model\":\"" model "\",\"data\":["
  words = 0
  for (k = 0; k < count; k++) {
    embed(texts[k], vec)
    words += split(texts[k], _w, " ")
    out = out (k ? "," : "") "{\"object\":\"embedding\",\"index\":" k ",\"embedding\":["
    for (d = 0; d < dims; d++) out = out (d ? "," : "") sprintf("%.6f", vec[d])
    out = out "]}"
  }
  print out "],\"usage\":{\"prompt_tokens\":" words ",\"total_tokens\":" words "}}"
}
