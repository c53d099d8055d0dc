"""A small Django project that serves an iris classifier with modelkit."""
