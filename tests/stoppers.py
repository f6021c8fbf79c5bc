"""A callback that sends its own process SIGTERM, as a batch scheduler or `kill` does, at a chosen epoch."""

import os
import signal

import lightning as L


class SigtermAtEpoch(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler turns it into SIGTERMException
