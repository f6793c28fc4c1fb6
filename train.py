"""Train a source ANN, convert it to an SNN and report SNN accuracy across T.

python train.py fit -c configs/quickstart.yaml
python train.py fit -c configs/quickstart.yaml --run_name qs1 --ckpt_path last   # resume a named run
python train.py test -c configs/quickstart.yaml --ckpt_path <checkpoint>

Exits with status 143 when stopped by SIGTERM (see docs/CLUSTER.md).
"""

from lightning_snn.cli import main

if __name__ == "__main__":
    main()
