"""Stage 6, leaderboard: tables (`board`), plots (`plots`) and statistics over seeds (`stats`),
built from the run store only."""
