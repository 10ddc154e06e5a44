"""`cai label`: a small web page where a few people label the pairs the AI judge is unsure of.

- `items`: reading ITEMS (a `cai route export` sheet, or any cai or TRL preference dataset);
- `store`: the SQLite database (WAL) every answer is committed to before the page advances;
- `assign`: which pair each rater sees next (`--per-pair` raters each, an overlap set for all);
- `markdown`: the escape-first Markdown renderer the page shows responses with;
- `app`: the FastAPI app (rater page, JSON API, admin page);
- `stats`: progress, time per label, inter-rater, position-bias and AI-human agreement;
- `export`: answers as human preference rows that `cai agree`, `route import` and `mix` read;
- `interchange`: Argilla dataset files and Label Studio tasks, out and back in.
- `read_argilla`, `read_label_studio`: completed exports of either tool read back, through
  `foreign`, the one mapping from another tool's names to cai's pair.

FastAPI and uvicorn are imported only by `app` and the `serve` command.
"""
