// Reader for plmon's identity on a management group: every subscription below it can be collected.
// Deployed on its own at management-group scope (a resource-group deployment cannot assign roles there):
//   az deployment mg create --management-group-id <mg> --location <loc> \
//     --template-file deploy/bicep/mg-reader.bicep --parameters principalId=<identity principal id>
// Reader is enough: plmon only reads (see docs/deploy.md for the exact actions it uses).
targetScope = 'managementGroup'

@description('Principal (object) id of plmon\'s user-assigned managed identity (output principalId of main.bicep).')
param principalId string

var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7' // built-in Reader

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, readerRoleId)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output roleAssignmentId string = readerAssignment.id
