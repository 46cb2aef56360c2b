# Terraform and provider versions, and the state backend. State lives in a per-project bucket created once by
# hand (chicken and egg): terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=gke".
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
  }

  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
  # Every resource carries the labels the billing export groups costs by.
  default_labels = local.labels
}

locals {
  labels = {
    environment = var.environment
    system      = "geoml"
    managed-by  = "terraform"
  }
}
