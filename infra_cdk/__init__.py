"""The AWS CDK app that deploys the kaggle-solver service, one stack per environment."""
