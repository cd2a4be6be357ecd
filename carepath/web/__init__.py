"""Server-rendered pages for people: the worklist and an episode's timeline (no build step)."""
