"""The admin dashboard: cached panels that read every app (selectors), their views and URLs."""
