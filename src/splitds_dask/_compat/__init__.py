"""The original ``split_dataset`` API: ``Blocks``, ``EmptySplitDataset``, ``save_to_split_dataset``."""
