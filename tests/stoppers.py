"""Callbacks that stop their own run at a chosen epoch: SIGTERM (a batch scheduler, `kill`) or Ctrl-C."""

import os
import signal

import lightning as L


class SigtermAtEpoch(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.stop()

    def stop(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler turns it into SIGTERMException


class CtrlCAtEpoch(SigtermAtEpoch):
    def stop(self) -> None:
        raise KeyboardInterrupt  # what SIGINT raises in the main thread
