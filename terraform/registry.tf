# Docker repository for the oxinfer images (<version> for CPU, <version>-gpu for GPU) in the cluster's region, so
# pulls stay in-region and free of egress. Tags are immutable: a version always means the same image. Cleanup
# policies are a cost lever: untagged layers and old versions do not pile up.
resource "google_artifact_registry_repository" "oxinfer" {
  # checkov:skip=CKV_GCP_84:images hold open-source code and no customer data; Google-managed encryption at rest is enough and a CMEK key would add a KMS dependency to every pull
  repository_id = "oxinfer"
  location      = var.region
  format        = "DOCKER"
  description   = "oxinfer inference server images"

  docker_config {
    immutable_tags = true
  }

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "1209600s"
    }
  }

  cleanup_policies {
    id     = "keep-recent-versions"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  depends_on = [google_project_service.required]
}
