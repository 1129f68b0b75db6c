"""robustlit metadata service: FastAPI + SQLModel REST API that records runs and launches them (never imports torch)."""
