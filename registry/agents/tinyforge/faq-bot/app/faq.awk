# faq-bot: the answer of the FAQ entry whose question best matches `q` (cosine of word sets),
# if its score is at least `min`; otherwise nothing is printed and the exit status is 1.
# Usage: awk -v q="user question" -v min=0.34 -f faq.awk faq.txt

function root(x,    r, i) {  # square root by Newton's method (busybox awk may lack sqrt)
  if (x <= 0) return 0
  r = (x > 1) ? x : 1
  for (i = 0; i < 40; i++) r = (r + x / r) / 2
  return r
}

function wordset(text, set,    n, i, w, words, count) {
  split("", set); count = 0
  n = split(tolower(text), words, /[^a-z0-9]+/)
  for (i = 1; i <= n; i++) {
    w = words[i]
    if (w != "" && !(w in set)) { set[w] = 1; count++ }
  }
  return count
}

BEGIN { FS = " [|] "; qn = wordset(q, asked); best = -1 }
/^#/ || NF < 2 { next }
{
  n = wordset($1, known); common = 0
  for (w in known) if (w in asked) common++
  score = (qn && n) ? common / root(qn * n) : 0
  if (score > best) { best = score; answer = $2 }
}
END {
  if (best < min + 0 || answer == "") exit 1
  print answer
}
