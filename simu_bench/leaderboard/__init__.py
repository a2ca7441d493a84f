"""Stage 6, leaderboard: the numbers of a run (`values`), the board over seeds (`board`), its
formats (`render`), plots (`plots`) and statistics over seeds (`stats`), built from the run store only."""

FORMATS = ("md", "csv", "latex", "html", "json")  # what `render.render` writes
