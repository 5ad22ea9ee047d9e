"""Voice: speech out (sentence splitting, text-to-speech, speakers)."""
