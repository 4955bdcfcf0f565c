"""The example campaigns, their library and protocols, shipped inside the package so that `labloop init FOLDER`
(orchestrator/cli/init.py) writes them out for a lab that installed labloop without this repository."""
