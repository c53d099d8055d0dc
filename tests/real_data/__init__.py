"""The real-data suite: tables shipped inside installed packages, and the pipelines people fit."""
