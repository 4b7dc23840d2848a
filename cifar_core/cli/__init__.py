"""The command line, `python -m cifar_core`: one module per command group, each command's parser beside its
handler; `main` assembles them and turns errors into messages and exit statuses."""
