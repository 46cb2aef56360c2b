# The five node pools and what each is for. Sizes come from var.node_pools; roles are fixed here:
#   system       GKE add-ons, metric collectors, Grafana, metrics adapter (tainted so workloads stay off)
#   cpu-regular  always-on services, oxinfer CPU pods: the steady baseline, covered by committed use discounts
#   cpu-spot     batch and Dask workers, Dagster runs: spot VMs (60-91% cheaper), scale to zero
#   gpu-spot     oxinfer GPU pods and training: g2-standard-8 with one NVIDIA L4, spot, scale to zero
#   notebooks    per-user notebook servers: scale to zero when nobody works
# Cost levers: spot for everything that tolerates preemption, min 0 on every pool but system and cpu-regular
# (an idle GPU pool costs nothing), OPTIMIZE_UTILIZATION autoscaling (gke.tf), and a committed use discount
# bought for the cpu-regular baseline (bought with gcloud or the console, not Terraform: it cannot be undone).
locals {
  pool_roles = {
    system = {
      spot        = false
      zones       = var.zones
      gpu         = false
      node_labels = { "geoml.dev/pool" = "system" }
      # GKE's own components tolerate this taint; everything else is kept off the system nodes.
      taints = [{ key = "components.gke.io/gke-managed-components", value = "true", effect = "NO_SCHEDULE" }]
    }
    cpu-regular = {
      spot        = false
      zones       = var.zones
      gpu         = false
      node_labels = { "geoml.dev/pool" = "cpu-regular" }
      taints      = []
    }
    cpu-spot = {
      spot        = true
      zones       = var.zones
      gpu         = false
      node_labels = { "geoml.dev/pool" = "cpu-spot" }
      # Only pods that accept preemption (they tolerate this taint) land on spot nodes.
      taints = [{ key = "cloud.google.com/gke-spot", value = "true", effect = "NO_SCHEDULE" }]
    }
    gpu-spot = {
      spot        = true
      zones       = var.gpu_zones
      gpu         = true
      node_labels = { "geoml.dev/pool" = "gpu-spot" }
      taints = [
        { key = "nvidia.com/gpu", value = "present", effect = "NO_SCHEDULE" },
        { key = "cloud.google.com/gke-spot", value = "true", effect = "NO_SCHEDULE" },
      ]
    }
    notebooks = {
      spot        = false
      zones       = var.zones
      gpu         = false
      node_labels = { "geoml.dev/pool" = "notebooks" }
      taints      = [{ key = "geoml.dev/notebooks", value = "true", effect = "NO_SCHEDULE" }]
    }
  }
}

resource "google_container_node_pool" "pools" {
  for_each = local.pool_roles

  name           = each.key
  cluster        = google_container_cluster.gke.id
  location       = var.region
  node_locations = each.value.zones

  # Bounds per zone; a pool at min 0 costs nothing until a pod asks for it.
  autoscaling {
    min_node_count  = var.node_pools[each.key].min_node_count
    max_node_count  = var.node_pools[each.key].max_node_count
    location_policy = each.value.spot ? "ANY" : "BALANCED"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  upgrade_settings {
    strategy        = "SURGE"
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.node_pools[each.key].machine_type
    disk_size_gb    = var.node_pools[each.key].disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    spot            = each.value.spot
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = each.value.node_labels
    resource_labels = merge(local.labels, { pool = each.key })

    dynamic "guest_accelerator" {
      for_each = each.value.gpu ? [1] : []
      content {
        type  = "nvidia-l4"
        count = 1
        # GKE installs and upgrades the driver that matches the node image.
        gpu_driver_installation_config {
          gpu_driver_version = "LATEST"
        }
      }
    }

    dynamic "taint" {
      for_each = each.value.taints
      content {
        key    = taint.value.key
        value  = taint.value.value
        effect = taint.value.effect
      }
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }

  lifecycle {
    # The cluster autoscaler owns the live node count.
    ignore_changes = [initial_node_count]
  }
}
