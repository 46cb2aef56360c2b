# The inference model repository: <pool>/<model>/config.toml, labels.txt and <version>/model.onnx, with one tree
# per pool (cpu/, gpu/) because a model's config.toml names its execution providers. Read-only for the servers
# (objectViewer through Workload Identity, iam.tf). Object versioning keeps overwritten or deleted model files
# for rollback; the lifecycle rule bounds what that costs.
resource "google_storage_bucket" "model_repository" {
  # checkov:skip=CKV_GCP_62:changes are recorded by Data Access audit logs (iam.tf); usage logs of reads would log every FUSE metadata refresh of every pod
  name          = "${var.project_id}-model-repository"
  location      = var.model_bucket_location
  storage_class = "STANDARD"
  force_destroy = false

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.model_noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 90
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}
