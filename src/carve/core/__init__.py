"""The ground floor: the typed config (`config`), Carve's error types (`errors`) and structured logging (`log`)."""
