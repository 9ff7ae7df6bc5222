"""Where the project's data lives (templates and recipes ship beside the package)."""
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_DIR / "templates"
RECIPES_DIR = PROJECT_DIR / "recipes"
