"""Model conversions out of the lab's built artifacts (Paddle.js web models, ...)."""
