# Renate's examples/train_mlp_locally/start_training_with_hpo.py with the import changed. Renate's
# example searches the RD updater's default space (Renate's config_space("RD"));
# retentive has no such function, so that space is written out below, with Syne Tune's
# domains, less Renate's batch_memory_frac, which RD does not use (retentive's RD refuses it).
import os

from syne_tune.config_space import choice, loguniform

from retentive.training import run_training_job

MAX_EPOCHS = int(os.environ.get("MAX_EPOCHS", 50))
config_space = {  # Renate's default space for RD
    "optimizer": "SGD",
    "momentum": choice([0.0, 0.9, 0.99]),
    "weight_decay": loguniform(1e-6, 1e-2),
    "learning_rate": loguniform(0.001, 0.5),
    "batch_size": 64,
    "memory_size": 1000,
}

if __name__ == "__main__":
    # we run the first training job on the MNIST classes [0-4]
    run_training_job(
        config_space=config_space,
        mode="max",
        metric="val_accuracy",
        updater="RD",  # the RepeatedDistillationModelUpdater
        max_epochs=MAX_EPOCHS,
        chunk_id=0,  # this selects the first chunk of the dataset
        config_file="renate_config.py",
        # location where the new model is saved to
        output_state_url="./state_dump_first_model_rd/",
        backend="local",  # the training job will run on the local machine
        scheduler="asha",
        # using only 5 trials will not give great performance -- just an example
        max_num_trials_finished=5,
    )

    run_training_job(
        config_space=config_space,
        mode="max",
        metric="val_accuracy",
        updater="RD",  # the RepeatedDistillationModelUpdater
        max_epochs=MAX_EPOCHS,
        chunk_id=1,  # this time we use the second chunk of the dataset
        config_file="renate_config.py",
        # the output of the first training job is loaded
        input_state_url="./state_dump_first_model_rd/",
        # location where the new model is saved to
        output_state_url="./state_dump_second_model_rd/",
        backend="local",
        scheduler="asha",
        max_num_trials_finished=5,
    )
