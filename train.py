"""Train a source ANN, convert it to an SNN and report SNN accuracy across T.

python train.py fit -c configs/quickstart.yaml
python train.py test -c configs/quickstart.yaml --ckpt_path <checkpoint>
"""

from lightning_snn.cli import main

if __name__ == "__main__":
    main()
