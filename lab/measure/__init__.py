"""Measuring: campaign files to jobs, the orchestration API (lab run, advise --measure, Ray), the scheduler and its progress, the Ray engine, device locks and duration estimates."""
