"""The build farm: Formfile parsing, build plans, images and their deployment."""
